-- Placeholder on branch scale-faults only: version 5 belongs to another branch.
-- Drop this file when merging (the real 0005_*.sql takes its place).
SELECT 1;
