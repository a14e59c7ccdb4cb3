-- Placeholder on branch console-evidence only: version 7 belongs to another branch.
-- Drop this file when merging (the real 0007_*.sql takes its place).
SELECT 1;
