-- Recording a batch of leases is the hot path of handing out work. Its three steps were
-- three statements in a transaction (BEGIN, lock, insert, COMMIT: four round trips); as
-- one function they are one statement, its own transaction, one round trip. Each step
-- still sees what the one before it did (a volatile function takes a new snapshot per
-- statement), so the rules are those of the three statements:
--   1. lock the items the batch will start, in item order, so two batches at once (on
--      any node) wait for each other rather than deadlock;
--   2. expire a labeler's old lease on an item that is past its expiry but still
--      'active' (Redis forgot it), so it neither blocks the new lease nor keeps the item
--      from them;
--   3. insert the leases of items still open (Redis may not know yet that one was
--      decided), one per (item, labeler), mark the items started, and return what was
--      inserted.
CREATE FUNCTION record_leases(projects bigint[], users bigint[], lease_ids text[],
                              item_ids bigint[], expires_ms bigint[], positions int[])
RETURNS TABLE (lease_id text, lease_item bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM items WHERE id = ANY(item_ids) AND status = 'unlabeled' ORDER BY id FOR UPDATE;

    UPDATE leases SET state = 'expired', finished_at = now()
    FROM unnest(item_ids, users) AS t(i, u)
    WHERE leases.item_id = t.i AND leases.user_id = t.u AND leases.state = 'active'
      AND leases.expires_at <= now();

    RETURN QUERY
    WITH ins AS (
        INSERT INTO leases (id, project_id, item_id, user_id, state, expires_at, position)
        SELECT t.l, t.p, t.i, t.u, 'active', to_timestamp(t.e / 1000.0), t.n
        FROM unnest(projects, users, lease_ids, item_ids, expires_ms, positions)
             AS t(p, u, l, i, e, n)
        WHERE EXISTS (SELECT 1 FROM items
                      WHERE items.id = t.i AND items.status IN ('unlabeled', 'in_progress'))
        ON CONFLICT (item_id, user_id) WHERE state IN ('active', 'submitted', 'skipped') DO NOTHING
        RETURNING leases.id, leases.item_id
    ), started AS (
        UPDATE items SET status = 'in_progress', updated_at = now()
        WHERE items.id IN (SELECT ins.item_id FROM ins) AND items.status = 'unlabeled'
    )
    SELECT ins.id, ins.item_id FROM ins;
END
$$;
