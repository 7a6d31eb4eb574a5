-- The data manager: owners browse, filter and sort a project's items, and act on a
-- selection of them.
--
-- An owner may take items out of labeling without deciding them ("skip"): they leave the
-- queue, are not exported and do not keep a project from completing; re-opening brings
-- them back.
ALTER TABLE items DROP CONSTRAINT items_status_check;
ALTER TABLE items ADD CONSTRAINT items_status_check
    CHECK (status IN ('unlabeled', 'in_progress', 'labeled', 'needs_review', 'missing', 'skipped'));
-- Pages sorted by last change, keyset-paged on (updated_at, id), either direction.
CREATE INDEX items_updated ON items (project_id, updated_at, id);
-- "Items this labeler holds or submitted": driven from the labeler's leases rather than by
-- probing every item of the project.
CREATE INDEX leases_user_items ON leases (project_id, user_id, item_id)
    WHERE state IN ('active', 'submitted');
-- Items with imported suggestions are usually few; their filter reads this short index.
CREATE INDEX items_prelabelled ON items (project_id, id) WHERE prelabel IS NOT NULL;
