-- Placeholder for version 14, reserved on main for issue 16 (event kind
-- column): migrations run without gaps. Merging main replaces this file
-- with the real 0014.
SELECT 1;
