// Building the applier's statements: see statement_builder.hpp.
#include "mapping/statement_builder.hpp"
#include "pg/error_boundary.hpp"

extern "C" {
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
}

namespace sequin {

namespace {

std::string quote_ident(const std::string &name) {
    const char *text = name.c_str();
    return pg_guard([&] { return quote_identifier(text); });
}

// The rest of compile_mapping: the SQL text of each statement.
class StatementBuilder {
  public:
    StatementBuilder(CompiledMapping &m) : m_(m) {}

    void build() {
        build_row_writes();
        build_lookup();
        build_remove();
        if (m_.citus == CitusKind::Distributed)
            build_shard_of();
        if (m_.order_column >= 0)
            build_tomb_insert();
        if (m_.is_child)
            build_remove_unlisted();
    }

  private:
    CompiledMapping &m_;

    const MappedColumn &order() const { return m_.columns[m_.order_column]; }

    static std::string param_type_desc(const MappedColumn &c) {
        return c.param_as_text ? "text[]" : type_sql(c.type->type_oid) + "[]";
    }

    // The value of column c read from alias (cast back when it travels as text).
    std::string typed(const MappedColumn &c, const std::string &alias) const {
        return c.param_as_text ? "(" + alias + ")::" + type_sql(c.type->type_oid) : alias;
    }

    static void add_param(PreparedStatement &s, Oid type, const std::string &desc) {
        s.arg_types.push_back(type);
        s.arg_descriptions.push_back(desc);
    }

    void add_column_param(PreparedStatement &s, const MappedColumn &c) {
        Oid array_type = c.param_as_text
                             ? TEXTARRAYOID
                             : pg_guard([&] { return get_array_type(c.type->type_oid); });
        add_param(s, array_type, c.name + " " + param_type_desc(c));
    }

    std::string order_guard(const std::string &stored, const std::string &incoming) const {
        const MappedColumn &o = order();
        std::string lt = operator_sql(o.type->type_oid, TYPECACHE_LT_OPR, o.name, "ordering");
        return "(" + stored + " IS NULL OR " + stored + " " + lt + " " + incoming + ")";
    }

    // The key column's equality: the unique index's (its operator family's), which may not
    // be the type's default; the default for a mapping compiled with deferred checks.
    std::string key_equality_sql(size_t k, const MappedColumn &c) const {
        if (k < m_.key_equality.size() && OidIsValid(m_.key_equality[k].equality_operator))
            return operator_sql_of(m_.key_equality[k].equality_operator);
        return operator_sql(c.type->type_oid, TYPECACHE_EQ_OPR, c.name, "equality");
    }

    // row.key = incoming for every key column; alias(k, column) names the incoming value.
    template <typename Alias>
    std::string key_match_by(const std::string &row, Alias &&alias) const {
        std::string sql;
        for (size_t k = 0; k < m_.key_columns.size(); k++) {
            const MappedColumn &c = m_.columns[m_.key_columns[k]];
            if (k)
                sql += " AND ";
            std::string collate = k < m_.key_collate_sql.size() ? m_.key_collate_sql[k] : "";
            sql += row + "." + quote_ident(c.name) + collate + " " + key_equality_sql(k, c) + " " +
                   typed(c, alias(k, c)) + collate;
        }
        return sql;
    }

    // The same, with the incoming key columns named prefix1, prefix2, ... (key_unnest).
    std::string key_match(const std::string &row, const std::string &alias_prefix) const {
        return key_match_by(row, [&](size_t k, const MappedColumn &) {
            return alias_prefix + std::to_string(k + 1);
        });
    }

    // unnest($first .. ) AS u(names): one array parameter per key column (+ order column).
    std::string key_unnest(PreparedStatement &s, bool with_index, bool with_order,
                           std::string &aliases) {
        std::string params;
        aliases.clear();
        if (with_index) {
            add_param(s, INT4ARRAYOID, "record number integer[]");
            params = "$1";
            aliases = "i";
        }
        for (size_t k = 0; k < m_.key_columns.size(); k++) {
            add_column_param(s, m_.columns[m_.key_columns[k]]);
            params += (params.empty() ? "$" : ", $") + std::to_string(s.arg_types.size());
            aliases += (aliases.empty() ? "k" : ", k") + std::to_string(k + 1);
        }
        if (with_order) {
            add_column_param(s, order());
            params += ", $" + std::to_string(s.arg_types.size());
            aliases += ", v";
        }
        return batch_rows(params, aliases);
    }

    // The batch as rows u(aliases): the parameter arrays side by side. unnest() in the
    // select list runs them in step, in array order, without the tuplestore per function
    // that ROWS FROM (unnest(..), ..) fills first.
    static std::string batch_rows(const std::string &params, const std::string &aliases,
                                  const char *alias = "u") {
        std::string sql = "(SELECT ";
        size_t p = 0, a = 0;
        while (true) {
            size_t p_end = params.find(", ", p), a_end = aliases.find(", ", a);
            sql += (p ? ", " : "") + std::string("pg_catalog.unnest(") +
                   params.substr(p, p_end - p) + ") AS " + aliases.substr(a, a_end - a);
            if (p_end == std::string::npos || a_end == std::string::npos)
                break;
            p = p_end + 2;
            a = a_end + 2;
        }
        return sql + ") AS " + alias;
    }

    // The writes of full rows share one parameter list: one array per mapped column.
    //   upsert:       INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE <stored version older>
    //   insert_new:   INSERT ... ON CONFLICT (key) DO NOTHING   (keys believed new)
    //   insert_plain: INSERT                                     (tried first for new keys)
    //   merge_*:      MERGE, see build_merges
    void build_row_writes() {
        PreparedStatement &s = m_.upsert;
        std::string insert_cols, select_list, params, aliases, excluded_set, update_set;
        for (MappedColumn &c : m_.columns) {
            std::string value;
            if (c.is_now) {
                Oid base = c.type->base_oid;
                value = base == TIMESTAMPTZOID ? "pg_catalog.now()"
                                               : "pg_catalog.timezone('UTC', pg_catalog.now())";
                value = "(" + value + ")::" + type_sql(c.type->type_oid);
                c.values_sql = value;
            } else {
                c.values_sql = c.param_as_text ? "::" + type_sql(c.type->type_oid) : "";
                add_column_param(s, c);
                c.param_number = static_cast<int>(s.arg_types.size());
                std::string alias = "a" + std::to_string(c.param_number);
                params += (params.empty() ? "$" : ", $") + std::to_string(c.param_number);
                aliases += (aliases.empty() ? "" : ", ") + alias;
                value = typed(c, "u." + alias);
            }
            std::string col = quote_ident(c.name);
            insert_cols += (insert_cols.empty() ? "" : ", ") + col;
            select_list += (select_list.empty() ? "" : ", ") + value;
            if (!c.is_key && !c.keep_on_conflict) {
                excluded_set += (excluded_set.empty() ? "" : ", ") + col + " = EXCLUDED." + col;
                update_set += (update_set.empty() ? "" : ", ") + col + " = " + value;
            }
        }
        std::string conflict;
        for (int k : m_.key_columns)
            conflict += (conflict.empty() ? "" : ", ") + quote_ident(m_.columns[k].name);
        if (excluded_set.empty()) { // nothing to overwrite: still count the row as updated
            std::string key = quote_ident(m_.columns[m_.key_columns[0]].name);
            excluded_set = key + " = EXCLUDED." + key;
            update_set = key + " = t." + key;
        }
        std::string from = batch_rows(params, aliases);
        std::string plain = "INSERT INTO " + m_.target_name + " AS t (" + insert_cols +
                            ") SELECT " + select_list + " FROM " + from;
        std::string insert = plain + " ON CONFLICT (" + conflict + ") DO ";
        s.sql = insert + "UPDATE SET " + excluded_set;
        m_.values_head = "INSERT INTO " + m_.target_name + " AS t (" + insert_cols + ") VALUES ";
        std::string guard;
        if (m_.order_column >= 0) {
            std::string col = quote_ident(order().name);
            s.sql += " WHERE " + order_guard("t." + col, "EXCLUDED." + col);
        }
        // Citus reports rows sent for ON CONFLICT, not rows written: the rows it returns
        // count, each saying whether it was inserted (no updater yet).
        // A parent of child collections: which rows it wrote, by their keys.
        // A child's upserts (no version: every one writes) count their inserts the same way,
        // rather than by a probe of each row afterwards.
        // (Not on a partitioned table, whose system columns RETURNING cannot read.)
        if (m_.citus != CitusKind::None || (m_.is_child && !m_.partitioned))
            s.sql += " RETURNING t.xmax OPERATOR(pg_catalog.=) '0'::pg_catalog.xid";
        if (m_.citus != CitusKind::None && !m_.children.empty())
            for (int k : m_.key_columns)
                s.sql += ", t." + quote_ident(m_.columns[k].name);
        m_.values_tail = s.sql.substr(plain.size());
        if (m_.order_column >= 0) {
            std::string col = quote_ident(order().name);
            guard =
                " AND " + order_guard("t." + col,
                                      typed(order(), "u.a" + std::to_string(order().param_number)));
        }

        build_merges(params, aliases, insert_cols, select_list, update_set, guard);

        if (m_.order_column >= 0) {
            m_.insert_new.sql = insert + "NOTHING";
            m_.insert_new.arg_types = s.arg_types;
            m_.insert_new.arg_descriptions = s.arg_descriptions;
        }
        if (m_.order_column >= 0 || m_.is_child) { // a child's: after a chunk of new keys
            m_.insert_plain.sql = plain;
            m_.insert_plain.arg_types = s.arg_types;
            m_.insert_plain.arg_descriptions = s.arg_descriptions;
        }
    }

    // A looked-up chunk in one statement, rows in key order: each record's action (0 insert,
    // 1 update, 2 delete) is what the look-up found, and fires only if the table still agrees
    // (apply/merged_write.cpp). merge_upserts has no DELETE action, which would need the
    // DELETE privilege even for a chunk without deletes.
    void build_merges(const std::string &params, const std::string &aliases,
                      const std::string &insert_cols, const std::string &select_list,
                      const std::string &update_set, const std::string &guard) {
        PreparedStatement &w = m_.merge_write;
        w.arg_types = m_.upsert.arg_types;
        w.arg_descriptions = m_.upsert.arg_descriptions;
        add_param(w, INT4ARRAYOID, "action integer[] (0 insert, 1 update, 2 delete)");
        std::string action = "u.act OPERATOR(pg_catalog.=) ";
        std::string head =
            "MERGE INTO " + m_.target_name + " AS t USING " +
            batch_rows(params + ", $" + std::to_string(w.arg_types.size()), aliases + ", act") +
            " ON " + key_match_by("t", [](size_t, const MappedColumn &c) {
                return "u.a" + std::to_string(c.param_number);
            });
        std::string upserts = " WHEN MATCHED AND " + action + "1" + guard + " THEN UPDATE SET " +
                              update_set + " WHEN NOT MATCHED AND " + action + "0 THEN INSERT (" +
                              insert_cols + ") VALUES (" + select_list + ")";
        w.sql = head + " WHEN MATCHED AND " + action + "2" + guard + " THEN DELETE" + upserts;
        w.join_in_batch_order = true;
        PreparedStatement &u = m_.merge_upserts;
        u.arg_types = w.arg_types;
        u.arg_descriptions = w.arg_descriptions;
        u.sql = head + upserts;
        u.join_in_batch_order = true;
        if (m_.is_child && m_.citus == CitusKind::None) {
            // A child's elements as updates of the rows stored (no version to guard): the
            // record numbers of the rows it updated; the others are inserted next.
            PreparedStatement &c = m_.update_listed;
            c.arg_types = m_.upsert.arg_types;
            c.arg_descriptions = m_.upsert.arg_descriptions;
            add_param(c, INT4ARRAYOID, "record number integer[]");
            c.sql =
                "UPDATE " + m_.target_name + " AS t SET " + update_set + " FROM " +
                batch_rows(params + ", $" + std::to_string(c.arg_types.size()), aliases + ", i") +
                " WHERE " +
                key_match_by("t",
                             [](size_t, const MappedColumn &col) {
                                 return "u.a" + std::to_string(col.param_number);
                             }) +
                " RETURNING u.i";
            c.join_in_batch_order = true;
        }
    }

    void build_lookup() {
        PreparedStatement &s = m_.lookup;
        std::string aliases;
        std::string from = key_unnest(s, true, m_.order_column >= 0, aliases);
        std::string newer = m_.order_column >= 0 ? order_guard("t." + quote_ident(order().name),
                                                               typed(order(), "u.v"))
                                                 : "true";
        s.sql = "SELECT u.i, " + newer + " FROM " + from + " JOIN " + m_.target_name + " AS t ON " +
                key_match("t", "u.k") + shard_filter();
    }

    // Citus: the distribution column among the statement's own keys ($2 on: after the record
    // numbers), a condition by which Citus sends the statement to their shards only.
    std::string shard_filter() const {
        if (m_.citus != CitusKind::Distributed)
            return "";
        size_t k = static_cast<size_t>(m_.distribution_key);
        const MappedColumn &c = m_.columns[m_.key_columns[k]];
        if (c.param_as_text)
            return "";
        std::string collate = k < m_.key_collate_sql.size() ? m_.key_collate_sql[k] : "";
        return " AND t." + quote_ident(c.name) + collate + " " + key_equality_sql(k, c) +
               " ANY ($" + std::to_string(k + 2) + ")";
    }

    // Citus: the shard of each value of the distribution column, in array order.
    void build_shard_of() {
        PreparedStatement &s = m_.shard_of;
        const MappedColumn &c = m_.columns[m_.key_columns[m_.distribution_key]];
        add_param(s, REGCLASSOID, "target regclass");
        add_column_param(s, c);
        std::string values = c.param_as_text ? "($2)::" + type_sql(c.type->type_oid) + "[]" : "$2";
        s.sql = "SELECT pg_catalog.get_shard_id_for_distribution_column($1, u.v) FROM "
                "pg_catalog.unnest(" +
                values + ") WITH ORDINALITY AS u(v, o) ORDER BY u.o";
    }

    // RETURNING which records removed a row: a tombstone of a key the caller did not see
    // binds only the caller under row-level security (apply/tombstones.cpp). The rows are
    // locked first, in the batch's order: a LATERAL subquery can only be the inner side of
    // the join, whereas a join of the batch with the table may scan the table first and lock
    // in its physical order. (On Citus the coordinator's shard locks order the writers.)
    void build_remove() {
        PreparedStatement &s = m_.remove;
        std::string aliases;
        std::string from = key_unnest(s, true, m_.order_column >= 0, aliases);
        auto guard = [&](const std::string &row) {
            return m_.order_column >= 0
                       ? " AND " + order_guard(row + "." + quote_ident(order().name),
                                               typed(order(), "u.v"))
                       : std::string();
        };
        s.join_in_batch_order = true;
        if (m_.citus != CitusKind::None) {
            s.sql = "DELETE FROM " + m_.target_name + " AS t USING " + from + " WHERE " +
                    key_match("t", "u.k") + guard("t") + shard_filter() + " RETURNING u.i";
            return;
        }
        s.sql = "DELETE FROM " + m_.target_name + " AS t USING (SELECT u.*, x.toid, x.tid FROM " +
                from + " CROSS JOIN LATERAL (SELECT l.tableoid AS toid, l.ctid AS tid FROM " +
                m_.target_name + " AS l WHERE " + key_match("l", "u.k") + guard("l") +
                " FOR UPDATE OF l) AS x) AS u WHERE t.tableoid OPERATOR(pg_catalog.=) u.toid AND "
                "t.ctid OPERATOR(pg_catalog.=) u.tid AND " +
                key_match("t", "u.k") + " RETURNING u.i";
    }

    // A child's rows under some parents (p: one array per parent key column) whose keys are
    // not among the keys listed (e: one array per key column): gone from their parents'
    // lists, or their parents deleted (no keys listed). RETURNING their keys, the parent
    // keys of their own children.
    void build_remove_unlisted() {
        PreparedStatement &s = m_.remove_unlisted;
        std::string params, aliases, parent_match;
        for (size_t k = 0; k < m_.parent_key_columns.size(); k++) {
            const MappedColumn &c = m_.columns[m_.parent_key_columns[k]];
            add_column_param(s, c);
            s.arg_descriptions.back() = "parent key " + s.arg_descriptions.back();
            std::string alias = "p" + std::to_string(k + 1);
            params += (params.empty() ? "$" : ", $") + std::to_string(s.arg_types.size());
            aliases += (aliases.empty() ? "" : ", ") + alias;
            parent_match += (k ? " AND t." : "t.") + quote_ident(c.name) + " " +
                            operator_sql(c.type->type_oid, TYPECACHE_EQ_OPR, c.name, "equality") +
                            " " + typed(c, "u." + alias);
        }
        std::string parents = batch_rows(params, aliases);
        // The keys listed: one hashed set (a subplan, not a join, so that the join with the
        // parents stays a nested loop probing their index), under the key's equality when one
        // operator serves every key column; else an anti-join.
        std::string listed, row, returning, equality;
        bool one_operator = true;
        for (size_t k = 0; k < m_.key_columns.size(); k++) {
            const MappedColumn &c = m_.columns[m_.key_columns[k]];
            add_column_param(s, c);
            s.arg_descriptions.back() = "listed key " + s.arg_descriptions.back();
            std::string param = "$" + std::to_string(s.arg_types.size());
            std::string collate = k < m_.key_collate_sql.size() ? m_.key_collate_sql[k] : "";
            listed += (k ? ", " : "") + std::string("pg_catalog.unnest(") + param + ")" +
                      (c.param_as_text ? "::" + type_sql(c.type->type_oid) : "") + collate;
            row += (k ? ", t." : "t.") + quote_ident(c.name) + collate;
            returning += (k ? ", t." : " RETURNING t.") + quote_ident(c.name);
            std::string op = key_equality_sql(k, c);
            one_operator = one_operator && (k == 0 || op == equality);
            equality = op;
            params += (k ? ", " : "") + param;
            aliases += (k ? ", k" : "k") + std::to_string(k + 1);
        }
        std::string not_listed =
            one_operator ? "NOT ((" + row + ") " + equality + " ANY (SELECT " + listed + "))"
                         : "NOT EXISTS (SELECT FROM " + batch_rows(params, aliases, "e") +
                               " WHERE " + key_match("t", "e.k") + ")";
        s.join_in_batch_order = true; // probes of the parent key columns' index
        s.sql = "DELETE FROM " + m_.target_name + " AS t USING " + parents + " WHERE " +
                parent_match + " AND " + not_listed + (m_.children.empty() ? "" : returning);
    }

    // Tombstones: plain values only (text, arrays, integers), so that running as the
    // extension's owner executes nothing of the caller's. Keys and versions are compared in
    // C, as typed values (apply/tombstones.cpp). Row n's key is $2[(n-1)*$3+1 : n*$3].
    void build_tomb_insert() {
        PreparedStatement &s = m_.tomb_insert;
        add_param(s, TEXTOID, "collection_id text");
        add_param(s, TEXTARRAYOID, "keys text[] (the key columns of every row, one after another)");
        add_param(s, INT4OID, "key columns integer");
        add_param(s, TEXTARRAYOID, "versions text[]");
        add_param(s, INT8ARRAYOID, "key hashes bigint[]");
        add_param(s, REGTYPEARRAYOID, "key types regtype[]");
        add_param(s, REGTYPEOID, "version type regtype");
        add_param(s, NAMEOID, "caller name");
        add_param(s, BOOLARRAYOID, "binds every role boolean[]");
        add_param(s, TEXTOID, "key signature text");
        s.sql = "INSERT INTO sequin.tombstones (collection_id, key, version, key_hash, key_types, "
                "version_type, created_by, binds_all, key_signature, deleted_at) "
                "SELECT $1, $2[(g.n OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog.*) $3 "
                "OPERATOR(pg_catalog.+) 1 : g.n OPERATOR(pg_catalog.*) $3], $4[g.n], $5[g.n], $6, "
                "$7, $8, $9[g.n], $10, pg_catalog.now() "
                "FROM pg_catalog.generate_series(1, pg_catalog.cardinality($4)) AS g(n)";
    }
};

} // namespace

std::string type_sql(Oid type_oid) {
    return pg_guard([&] { return format_type_extended(type_oid, -1, FORMAT_TYPE_FORCE_QUALIFY); });
}

std::string type_display(Oid type_oid, int32 typmod) {
    return pg_guard([&] { return format_type_with_typemod(type_oid, typmod); });
}

std::string operator_sql_of(Oid opr) {
    return pg_guard([&]() -> char * {
        HeapTuple tuple = SearchSysCache1(OPEROID, ObjectIdGetDatum(opr));
        if (!HeapTupleIsValid(tuple))
            elog(ERROR, "cache lookup failed for operator %u", opr);
        Form_pg_operator form = (Form_pg_operator)GETSTRUCT(tuple);
        char *result =
            psprintf("OPERATOR(%s.%s)", quote_identifier(get_namespace_name(form->oprnamespace)),
                     NameStr(form->oprname));
        ReleaseSysCache(tuple);
        return result;
    });
}

// OPERATOR(schema.op) for a type's default btree operator (equality or less-than).
std::string operator_sql(Oid type_oid, int which, const std::string &column, const char *what) {
    Oid opr = pg_guard([&] {
        TypeCacheEntry *entry = lookup_type_cache(type_oid, which);
        return which == TYPECACHE_EQ_OPR ? entry->eq_opr : entry->lt_opr;
    });
    if (!OidIsValid(opr))
        throw PgError(ERRCODE_UNDEFINED_FUNCTION, "column \"" + column + "\" has type " +
                                                      type_display(type_oid, -1) +
                                                      ", which has no " + what + " operator");
    return operator_sql_of(opr);
}

void build_statements(CompiledMapping &m) {
    StatementBuilder(m).build();
}

} // namespace sequin
