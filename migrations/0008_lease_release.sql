-- Leases a labeler walks away from are released, and an item whose lease expired or was
-- released without a submission may come back to the same labeler: only a submit or a skip
-- keeps it from them for good. So one open or finished lease per (item, labeler), and any
-- number of expired or released ones.
ALTER TABLE leases DROP CONSTRAINT leases_state_check;
ALTER TABLE leases ADD CONSTRAINT leases_state_check
    CHECK (state IN ('active', 'submitted', 'skipped', 'expired', 'released'));
DROP INDEX leases_item_user;
CREATE UNIQUE INDEX leases_item_user ON leases (item_id, user_id)
    WHERE state IN ('active', 'submitted', 'skipped');
-- Where a lease stood in the page it was handed out with, so that resuming a labeler's
-- leases gives back the same page in the same order.
ALTER TABLE leases ADD COLUMN position integer NOT NULL DEFAULT 0;
-- "My active leases in this project", asked on every request for work.
CREATE INDEX leases_user_active ON leases (project_id, user_id, created_at, position)
    WHERE state = 'active';
