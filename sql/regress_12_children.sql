-- Child collections: a list inside a record lands in a table of its own. An applied parent
-- makes its children exactly its list; a stale one touches none; an absent or null list leaves
-- them; "has_more" upserts only; a deleted parent, or a child that leaves its list, takes its
-- own children along (three levels here).
\i sql/include/regress_setup.psql
\set VERBOSITY terse
CREATE SCHEMA ch;
CREATE TABLE ch.subs (id text PRIMARY KEY, customer text, v bigint);
CREATE TABLE ch.items (id text PRIMARY KEY, sub_id text NOT NULL, price text, qty int CHECK (qty >= 0),
                       pos int, first_seen timestamptz DEFAULT now());
CREATE INDEX ON ch.items (sub_id);
CREATE TABLE ch.tiers (id text PRIMARY KEY, item_id text NOT NULL, up_to int);
CREATE TABLE ch.tags (sub_id text, pos int, tag text, PRIMARY KEY (sub_id, pos));
SELECT sequin.create_mapping('ch:sub', 'ch.subs',
    '{"id": "data.id", "customer": "data.customer", "v": "updated_idx"}', order_column => 'v');
SELECT sequin.create_mapping(collection_id => 'ch:item', target_table => 'ch.items',
    columns => '{"id": "id", "sub_id": "$parent.data.id", "price": "price.id", "qty": "quantity", "pos": "$index"}',
    parent => 'ch:sub', list_source => '"data.items.data"', parent_key_columns => '{sub_id}');
SELECT sequin.create_mapping(collection_id => 'ch:tier', target_table => 'ch.tiers',
    columns => '{"id": "id", "item_id": "$parent.id", "up_to": "up_to"}',
    parent => 'ch:item', list_source => '["tiers"]', parent_key_columns => '{item_id}');
-- A list of strings, keyed by (parent, position).
SELECT sequin.create_mapping(collection_id => 'ch:tag', target_table => 'ch.tags',
    columns => '{"sub_id": "$parent.data.id", "pos": "$index", "tag": "$element"}',
    parent => 'ch:sub', list_source => '"data.tags"', parent_key_columns => '{sub_id}');

-- sub(id, version, items, tags): items as "si_1/p1/2[t1,t2]" (id/price/quantity[tiers]);
-- items 'absent', 'null', 'partial:...' (has_more) or a list; tags likewise.
CREATE FUNCTION ch.list(text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT coalesce((SELECT jsonb_agg(jsonb_build_object('id', m[1], 'price', jsonb_build_object('id', m[2]),
                                 'quantity', m[3]::int) ||
                             CASE WHEN m[4] IS NULL THEN '{}' ELSE jsonb_build_object('tiers',
                                 (SELECT coalesce(jsonb_agg(jsonb_build_object('id', t, 'up_to', length(t))), '[]')
                                    FROM unnest(string_to_array(nullif(m[4], ''), ',')) AS t)) END ORDER BY o)
                       FROM regexp_matches($1, '(\w+)/(\w+)/(-?\d+)(?:\[([\w,]*)\])?', 'g')
                            WITH ORDINALITY AS x(m, o)), '[]')
$$;
CREATE FUNCTION ch.sub(id text, v int, items text, tags text DEFAULT 'absent', deleted boolean DEFAULT false)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('id', 'rec_' || id || '_' || v, 'collection_id', 'ch:sub', 'updated_idx', v,
        'deleted', deleted, 'data', jsonb_build_object('id', id, 'customer', 'cus_' || v)
        || CASE WHEN items = 'absent' THEN '{}'
                WHEN items = 'null' THEN '{"items": {"data": null, "has_more": false}}'
                ELSE jsonb_build_object('items', jsonb_build_object('has_more', items LIKE 'partial:%',
                         'data', ch.list(regexp_replace(items, '^partial:', '')))) END
        || CASE WHEN tags = 'absent' THEN '{}' WHEN tags = 'null' THEN '{"tags": null}'
                ELSE jsonb_build_object('tags', to_jsonb(coalesce(string_to_array(nullif(tags, ''), ','), '{}'))) END)
$$;
CREATE VIEW ch.state AS
    SELECT s.id AS sub, s.v, (SELECT string_agg(i.id || '/' || i.price || '/' || i.qty || '@' || i.pos ||
                 coalesce('[' || (SELECT string_agg(t.id, ',' ORDER BY t.id) FROM ch.tiers t WHERE t.item_id = i.id) || ']', ''),
                 ' ' ORDER BY i.pos, i.id) FROM ch.items i WHERE i.sub_id = s.id) AS items,
           (SELECT string_agg(g.tag, ',' ORDER BY g.pos) FROM ch.tags g WHERE g.sub_id = s.id) AS tags
      FROM ch.subs s;

-- Inserted with its lists (three levels, and a list of strings).
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(
    ch.sub('a', 1, 'si_1/p1/1[t1,t2] si_2/p2/2', 'x,y'),
    ch.sub('b', 1, 'si_3/p3/3')));
SELECT * FROM ch.state ORDER BY sub;
-- Updated: si_1 leaves (its tiers go too), si_4 arrives, si_2 changes and gets tiers; tags
-- shrink. b's list is absent: b's children stay.
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(
    ch.sub('a', 2, 'si_2/p2/5[t3] si_4/p4/1', 'z'),
    ch.sub('b', 2, 'absent')));
SELECT * FROM ch.state ORDER BY sub;
SELECT count(*) AS tiers_left FROM ch.tiers;
-- Stale and equal versions touch no child, whatever their lists say.
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(
    ch.sub('a', 1, ''), ch.sub('a', 2, 'si_9/p9/9'), ch.sub('b', 1, '')));
SELECT * FROM ch.state ORDER BY sub;
-- Duplicates in one call: the newest record's list wins, whatever the array order.
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(
    ch.sub('b', 4, 'si_6/p6/6'), ch.sub('b', 3, 'si_5/p5/5')));
SELECT * FROM ch.state WHERE sub = 'b';
-- A null list leaves the children; has_more upserts and removes nothing; an empty list
-- removes them all.
SELECT * FROM sequin.sequin_upsert(ch.sub('b', 5, 'null', 'null'));
SELECT * FROM ch.state WHERE sub = 'b';
SELECT * FROM sequin.sequin_upsert(ch.sub('a', 3, 'partial:si_2/p2/7 si_7/p7/7'));
SELECT * FROM ch.state WHERE sub = 'a';
SELECT * FROM sequin.sequin_upsert(ch.sub('a', 4, '', ''));
SELECT * FROM ch.state WHERE sub = 'a';
-- An item moves from one parent to another in one call.
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(
    ch.sub('a', 5, 'si_6/p6/1'), ch.sub('b', 6, '')));
SELECT * FROM ch.state ORDER BY sub;
-- A deleted parent deletes its children and theirs; a late record cannot bring them back.
SELECT * FROM sequin.sequin_upsert(ch.sub('c', 1, 'si_8/p8/8[t8]', 'q'));
SELECT * FROM sequin.sequin_upsert(ch.sub('c', 2, 'absent', 'absent', true));
SELECT * FROM sequin.sequin_upsert(ch.sub('c', 1, 'si_8/p8/8[t8]', 'q'));
SELECT count(*) AS c_items FROM ch.items WHERE sub_id = 'c';
SELECT count(*) AS c_tiers FROM ch.tiers WHERE id = 't8';
SELECT count(*) AS c_tags FROM ch.tags WHERE sub_id = 'c';

-- A bad element fails its parent record, and the call: nothing stays.
SELECT try($$SELECT sequin.sequin_upsert(jsonb_build_array(ch.sub('d', 1, 'si_d/pd/1'),
    ch.sub('e', 1, 'si_e/pe/-1')))$$);
SELECT try($$SELECT sequin.sequin_upsert(jsonb_set(ch.sub('e', 1, 'si_e/pe/1'), '{data,items,data,0,quantity}', '"many"'))$$);
SELECT try($$SELECT sequin.sequin_upsert(jsonb_set(ch.sub('e', 1, ''), '{data,items,data}', '{"id": "si_e"}'))$$);
SELECT try($$SELECT sequin.sequin_upsert(jsonb_set(ch.sub('e', 1, 'si_e/pe/1'), '{data,items,data,0,id}', 'null'))$$);
SELECT count(*) AS nothing_stays FROM ch.subs WHERE id IN ('d', 'e');
-- A child's collection_id is refused in a record.
SELECT try($$SELECT sequin.sequin_upsert('{"id": "si_1", "collection_id": "ch:item"}')$$);
-- Counts: the records sent; sequin.stats counts child rows under their collection.
SELECT collection_id, inserted, updated, deleted, skipped, failed FROM sequin.stats ORDER BY 1;

-- A replay writes nothing (no transaction id), also in a READ ONLY transaction.
BEGIN;
SELECT * FROM sequin.sequin_upsert(jsonb_build_array(ch.sub('a', 5, 'si_6/p6/1'), ch.sub('b', 6, '')));
SELECT pg_current_xact_id_if_assigned() IS NULL AS wrote_nothing;
COMMIT;
BEGIN READ ONLY;
SELECT * FROM sequin.sequin_upsert(ch.sub('a', 5, 'si_6/p6/1'));
COMMIT;

-- Staging: a record whose children fail stays failed as a whole (its parent row is not
-- written); the other records of the statement apply.
INSERT INTO sequin.staging (record) VALUES (ch.sub('f', 1, 'si_f/pf/1')), (ch.sub('g', 1, 'si_g/pg/-1')),
    (ch.sub('h', 1, 'si_h/ph/1[th]'));
SELECT record->'data'->>'id' AS sub, status, regexp_replace(error, ' \(detail: Failing row contains .*\)$', '') AS error
  FROM sequin.staging ORDER BY id;
SELECT * FROM ch.state WHERE sub IN ('f', 'g', 'h') ORDER BY sub;
SELECT collection_id, inserted, failed FROM sequin.stats WHERE collection_id IN ('ch:sub', 'ch:item', 'ch:tier') ORDER BY 1;
DELETE FROM sequin.staging;

-- explain_mapping of a parent shows its children's statements.
SELECT step FROM sequin.explain_mapping('ch:sub') WHERE step LIKE 'child%' OR step LIKE 'rows%' ORDER BY step;

-- Validation.
CREATE TABLE ch.other (id int PRIMARY KEY, sub_id text, sub_n int);
SELECT try($$SELECT sequin.create_mapping('ch:x', 'ch.other', '{"id": "$index"}')$$);
SELECT try($$SELECT sequin.create_mapping('ch:x', 'ch.other', '{"id": "id"}', list_source => '"a"')$$);
SELECT try($$SELECT sequin.create_mapping('ch:x', 'ch.other', '{"id": "id", "sub_id": "$parent.data.id"}',
    parent => 'ch:sub', parent_key_columns => '{sub_id}')$$);
SELECT try($$SELECT sequin.create_mapping('ch:x', 'ch.other', '{"id": "id", "sub_id": "$parent.data.id"}',
    parent => 'ch:sub', list_source => '"data.x"')$$);
SELECT try($$SELECT sequin.create_mapping('ch:x', 'ch.other', '{"id": "id", "sub_id": "$parent.id"}',
    parent => 'ch:sub', list_source => '"data.x"', parent_key_columns => '{sub_id}')$$);
SELECT try($$SELECT sequin.create_mapping('ch:x', 'ch.other', '{"id": "id", "sub_n": "$parent.data.id"}',
    parent => 'ch:sub', list_source => '"data.x"', parent_key_columns => '{sub_n}')$$);
SELECT try($$SELECT sequin.create_mapping('ch:x', 'ch.other', '{"id": "id", "sub_id": "$parent.data.id"}',
    parent => 'ch:sub', list_source => '"data.x"', parent_key_columns => '{sub_id}', on_delete => 'ignore')$$);
SELECT try($$SELECT sequin.create_mapping('ch:x', 'ch.other', '{"id": "id", "sub_id": "$parent.data.id"}',
    parent => 'ch:sub', list_source => '"$index"', parent_key_columns => '{sub_id}')$$);
SELECT try($$SELECT sequin.create_mapping('ch:x', 'ch.other', '{"id": "id", "sub_id": "$parent.data.id"}',
    parent => 'ch:nope', list_source => '"data.x"', parent_key_columns => '{sub_id}')$$);
-- A child keyed by its place in the list cannot be a parent.
SELECT try($$SELECT sequin.create_mapping('ch:x', 'ch.other', '{"id": "n", "sub_n": "$parent.pos"}',
    parent => 'ch:tag', list_source => '"x"', parent_key_columns => '{sub_n}')$$);
-- A cycle.
SELECT try($$UPDATE sequin.mappings SET parent = 'ch:tier', list_source = '"x"', columns = columns || '{"sub_id": "$parent.id"}'
    WHERE collection_id = 'ch:item'$$);
-- Only a parent's own records are accepted, and a top-level mapping has no list.
SELECT try($$UPDATE sequin.mappings SET parent = NULL WHERE collection_id = 'ch:tag'$$);
-- A parent's change is checked against its children: a key of another type is refused.
CREATE TABLE ch.subs_int (id int PRIMARY KEY, customer text, v bigint);
SELECT try($$UPDATE sequin.mappings SET target_table = 'ch.subs_int' WHERE collection_id = 'ch:sub'$$);
-- A child's parent key column must compare as the parent's unique index does.
CREATE COLLATION ch.nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE ch.psub (id text COLLATE ch.nocase PRIMARY KEY, v bigint);
CREATE TABLE ch.pitem (id text PRIMARY KEY, sub_id text NOT NULL);
SELECT sequin.create_mapping('ch:psub', 'ch.psub', '{"id": "id", "v": "updated_idx"}', order_column => 'v');
SELECT try($$SELECT sequin.create_mapping(collection_id => 'ch:pitem', target_table => 'ch.pitem',
    columns => '{"id": "id", "sub_id": "$parent.id"}', parent => 'ch:psub', list_source => '"items"',
    parent_key_columns => '{sub_id}')$$);
-- Elements of a list of objects that are not objects.
SELECT try($$SELECT sequin.sequin_upsert(jsonb_set(ch.sub('e', 1, ''), '{data,items,data}', '["si_x", 3]'))$$);
-- conflict_columns in another order than the unique index's columns.
CREATE TABLE ch.slots (sub_id text, pos int, tag text, PRIMARY KEY (sub_id, pos));
SELECT sequin.create_mapping(collection_id => 'ch:slot', target_table => 'ch.slots',
    columns => '{"sub_id": "$parent.data.id", "pos": "$index", "tag": "$element"}', conflict_columns => '{pos,sub_id}',
    parent => 'ch:sub', list_source => '"data.tags"', parent_key_columns => '{sub_id}');
SELECT * FROM sequin.sequin_upsert(ch.sub('s', 1, '', 'a,b,c'));
SELECT * FROM sequin.sequin_upsert(ch.sub('s', 2, '', 'd'));
SELECT string_agg(pos || ':' || tag, ' ' ORDER BY pos) AS slots FROM ch.slots WHERE sub_id = 's';
-- A partitioned child table (RETURNING cannot read its system columns): updates count.
CREATE TABLE ch.pp (id text PRIMARY KEY, v bigint);
CREATE TABLE ch.pc (id text, pid text NOT NULL, q int, PRIMARY KEY (id)) PARTITION BY HASH (id);
CREATE TABLE ch.pc0 PARTITION OF ch.pc FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE ch.pc1 PARTITION OF ch.pc FOR VALUES WITH (MODULUS 2, REMAINDER 1);
SELECT sequin.create_mapping('ch:pp', 'ch.pp', '{"id": "id", "v": "updated_idx"}', order_column => 'v');
SELECT sequin.create_mapping(collection_id => 'ch:pc', target_table => 'ch.pc',
    columns => '{"id": "id", "pid": "$parent.id", "q": "q"}', parent => 'ch:pp', list_source => '"l"',
    parent_key_columns => '{pid}');
SELECT * FROM sequin.sequin_upsert('{"collection_id": "ch:pp", "id": "1", "updated_idx": 1, "l": [{"id": "a", "q": 1}, {"id": "b", "q": 2}]}');
SELECT * FROM sequin.sequin_upsert('{"collection_id": "ch:pp", "id": "1", "updated_idx": 2, "l": [{"id": "a", "q": 5}, {"id": "c", "q": 3}]}');
SELECT string_agg(id || ':' || q, ' ' ORDER BY id) AS pc FROM ch.pc;
SELECT inserted, updated, deleted FROM sequin.stats WHERE collection_id = 'ch:pc';
-- An error of the removal of rows that left their lists names the record.
CREATE FUNCTION ch.keep_b() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF OLD.id = 'b' THEN RAISE EXCEPTION 'row b may not go' USING ERRCODE = '23514'; END IF; RETURN OLD; END $$;
CREATE TRIGGER keep_b BEFORE DELETE ON ch.pc0 FOR EACH ROW EXECUTE FUNCTION ch.keep_b();
CREATE TRIGGER keep_b BEFORE DELETE ON ch.pc1 FOR EACH ROW EXECUTE FUNCTION ch.keep_b();
SELECT * FROM sequin.sequin_upsert('{"collection_id": "ch:pp", "id": "2", "updated_idx": 1, "l": [{"id": "b", "q": 1}]}');
SELECT try($$SELECT sequin.sequin_upsert('[{"collection_id": "ch:pp", "id": "1", "updated_idx": 3, "l": []}, {"collection_id": "ch:pp", "id": "2", "updated_idx": 3, "l": []}]')$$);
-- In staging, the record fails with the error's detail; the other applies.
CREATE TABLE ch.pref (id text PRIMARY KEY);
ALTER TABLE ch.pc ADD COLUMN r text REFERENCES ch.pref;
UPDATE sequin.mappings SET columns = columns || '{"r": "r"}' WHERE collection_id = 'ch:pc';
INSERT INTO sequin.staging (record) VALUES
    ('{"collection_id": "ch:pp", "id": "3", "updated_idx": 1, "l": [{"id": "d", "r": "nope"}]}'),
    ('{"collection_id": "ch:pp", "id": "4", "updated_idx": 1, "l": [{"id": "e"}]}');
SELECT error FROM sequin.staging;
SELECT string_agg(id, ' ' ORDER BY id) AS pp FROM ch.pp;
DELETE FROM sequin.staging;
-- The parent's key retyped under a session that compiled the mappings: a clear error.
SELECT * FROM sequin.sequin_upsert('{"collection_id": "ch:pp", "id": "7", "updated_idx": 1, "l": []}');
ALTER TABLE ch.pp ALTER COLUMN id TYPE int USING id::int;
SELECT try($$SELECT sequin.sequin_upsert('{"collection_id": "ch:pp", "id": 7, "updated_idx": 2, "l": [{"id": "z"}]}')$$);
-- A parent cannot be deleted while children name it.
SELECT try($$DELETE FROM sequin.mappings WHERE collection_id = 'ch:item'$$);
SELECT count(*) AS mappings FROM sequin.mappings;
DROP SCHEMA ch CASCADE;
