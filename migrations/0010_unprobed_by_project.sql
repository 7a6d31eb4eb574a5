-- Probing looks for unprobed items one project at a time (those with a dataset it can
-- reach), and exports ask the same of one project. Indexed by id alone, every poll walked
-- past every unprobed item it could not take: those of projects without a dataset, of a
-- project whose datastore is unreachable, and files gone missing (85 ms at 500,000 items,
-- every few seconds, on every node). By project and id, each project's first unprobed
-- items are a short range of the index, and missing files are not in it.
DROP INDEX items_unprobed;
CREATE INDEX items_unprobed ON items (project_id, id)
    WHERE width IS NULL AND probe_error IS NULL AND status <> 'missing';
