-- A labeler may correct what they submitted while the item is not yet decided; when they
-- last did is shown in their history (and tells a reviewer the annotation changed after
-- its first submit).
ALTER TABLE annotations ADD COLUMN amended_at timestamptz;
-- A labeler's own submissions in a project, newest first (their history).
CREATE INDEX annotations_user_time ON annotations (project_id, user_id, created_at);
