-- Placeholder on branch console-evidence only: version 6 belongs to another branch.
-- Drop this file when merging (the real 0006_*.sql takes its place).
SELECT 1;
