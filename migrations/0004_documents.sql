-- Annotation documents: an append-only log of Yjs updates per room, plus a snapshot
-- that compaction folds the log into. A room is "{project}/{item}/{annotator}".
-- seq is global and only orders rows for reading; CRDT updates commute, so rows that
-- commit out of order are harmless.
CREATE TABLE doc_updates (
    seq        bigserial PRIMARY KEY,
    room       text COLLATE "C" NOT NULL,
    data       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX doc_updates_room ON doc_updates (room, seq);

CREATE TABLE doc_snapshots (
    room       text COLLATE "C" PRIMARY KEY,
    data       bytea NOT NULL,
    updates    integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
