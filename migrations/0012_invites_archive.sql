-- One-time links an instance admin hands out: to invite a new person (who sets their own
-- name and password) or to let someone set a new password. Only the link's SHA-256 is
-- stored, like sessions and API tokens: a database leak hands out no working link.
CREATE TABLE invites (
    id         bigserial PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('invite', 'reset')),
    created_by bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    -- Set when the link is used, or when a newer link for the same user replaces it.
    used_at    timestamptz,
    revoked_at timestamptz
);
CREATE INDEX invites_user ON invites (user_id, id DESC);

-- An invited person has no password until they open their link.
ALTER TABLE users ADD COLUMN has_password boolean NOT NULL DEFAULT true;

-- Archived projects are out of everyday lists and read-only until unarchived; unlike a
-- deletion, an archive can be undone.
ALTER TABLE projects ADD COLUMN archived_at timestamptz;
