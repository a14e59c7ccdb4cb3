-- Placeholder: version 6 is taken by a migration on another branch (the
-- console's evidence/incident work). Migrations must run without gaps, so
-- this branch carries an empty step; replace this file with the real 0006
-- when the branches meet. It changes nothing.
SELECT 1;
