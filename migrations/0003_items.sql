-- Items: one per file of a project's datastore, registered in bulk with COPY.
-- project_id is deliberately not a declared foreign key: projects are never deleted
-- (deletion is soft), and a per-row referential check doubled the time of a
-- 500,000-item ingest. Keys compare bytewise (COLLATE "C"): the same order as the
-- datastores' listings, and much cheaper to index than a linguistic collation.
CREATE TABLE items (
    id              bigserial PRIMARY KEY,
    project_id      bigint NOT NULL,
    key             text COLLATE "C" NOT NULL,
    media_kind      text NOT NULL CHECK (media_kind IN ('image', 'dicom')),
    -- Filled in the background by the prober; NULL until then.
    width           integer,
    height          integer,
    frames          integer,
    probe_error     text,
    -- Random order fixed at registration: labelers see items shuffled to reduce bias.
    shuffle_key     double precision NOT NULL DEFAULT random(),
    status          text NOT NULL DEFAULT 'unlabeled'
        CHECK (status IN ('unlabeled', 'in_progress', 'labeled', 'needs_review', 'missing')),
    -- What the status was before the file disappeared, restored if it comes back.
    status_before_missing text,
    missing_since   timestamptz,
    final           jsonb,
    decided_by      text CHECK (decided_by IN ('single', 'consensus', 'owner', 'imported')),
    -- Labels imported as suggestions a labeler must confirm.
    prelabel        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, key)
);
-- New items land at the right edge of this index (same status, rising id), which keeps
-- bulk registration cheap; the dispatcher sorts by shuffle_key when it builds its queue.
CREATE INDEX items_status ON items (project_id, status, id);
CREATE INDEX items_unprobed ON items (id) WHERE width IS NULL AND probe_error IS NULL;

-- The outcome of the last ingest or refresh, shown in the project's details.
ALTER TABLE projects ADD COLUMN ingest jsonb;
