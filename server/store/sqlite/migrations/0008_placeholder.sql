-- Placeholder on branch scale-faults only: version 8 belongs to another branch.
-- Drop this file when merging (the real 0008_*.sql takes its place).
SELECT 1;
