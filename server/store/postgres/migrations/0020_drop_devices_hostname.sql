-- devices_hostname (hostname) is covered by devices_hostname_id
-- (hostname, id), which also serves the lookup by hostname ordered by ID
-- (sqlstore DeviceByKey). Every index on devices is written again on each
-- report that updates the row (on PostgreSQL every index, since last_seen
-- is indexed and the update cannot be HOT): one index fewer to write.
DROP INDEX devices_hostname;
