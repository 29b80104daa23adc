"""The catalog and its statistics: tables, columns, indexes, foreign keys, pg_stats."""
from __future__ import annotations

import psycopg

from queryaudit.snapshot import Column, ColumnStats, ExtendedStatistic, ForeignKey, Index, Table, View

USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname !~ '^pg_temp_'"


def _iso(value):
    return value.isoformat() if value is not None and hasattr(value, "isoformat") else value


def collect_tables(conn: psycopg.Connection) -> list[Table]:
    rows = conn.execute(f"""
        SELECT n.nspname, c.relname, c.oid::int8, c.relkind::text, c.reltuples, c.relpages,
               pg_total_relation_size(c.oid), pg_relation_size(c.oid),
               coalesce(s.seq_scan, 0), coalesce(s.seq_tup_read, 0), coalesce(s.idx_scan, 0),
               coalesce(s.idx_tup_fetch, 0), coalesce(s.n_tup_ins, 0), coalesce(s.n_tup_upd, 0),
               coalesce(s.n_tup_del, 0), coalesce(s.n_tup_hot_upd, 0), coalesce(s.n_live_tup, 0),
               coalesce(s.n_dead_tup, 0), coalesce(s.n_mod_since_analyze, 0),
               s.last_analyze, s.last_autoanalyze, s.last_vacuum, s.last_autovacuum,
               coalesce(c.reloptions, '{{}}'),
               (SELECT pn.nspname || '.' || pc.relname FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent
                JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE i.inhrelid = c.oid AND c.relispartition)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
        WHERE c.relkind IN ('r', 'p', 'm') AND {USER_SCHEMAS}
        ORDER BY n.nspname, c.relname""").fetchall()
    tables = {}
    for r in rows:
        t = Table(schema=r[0], name=r[1], oid=r[2], kind=r[3], reltuples=float(r[4]), relpages=int(r[5]),
                  total_bytes=int(r[6]), table_bytes=int(r[7]), seq_scan=int(r[8]), seq_tup_read=int(r[9]),
                  idx_scan=int(r[10]), idx_tup_fetch=int(r[11]), n_tup_ins=int(r[12]), n_tup_upd=int(r[13]),
                  n_tup_del=int(r[14]), n_tup_hot_upd=int(r[15]), n_live_tup=int(r[16]), n_dead_tup=int(r[17]),
                  n_mod_since_analyze=int(r[18]), last_analyze=_iso(r[19]), last_autoanalyze=_iso(r[20]),
                  last_vacuum=_iso(r[21]), last_autovacuum=_iso(r[22]), reloptions=list(r[23]),
                  partition_of=r[24])
        tables[t.oid] = t
    for oid, name, typ, not_null, attnum, default in conn.execute(f"""
            SELECT a.attrelid::int8, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attnum,
                   pg_get_expr(d.adbin, d.adrelid)
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE c.relkind IN ('r', 'p', 'm') AND a.attnum > 0 AND NOT a.attisdropped AND {USER_SCHEMAS}
            ORDER BY a.attrelid, a.attnum"""):
        if oid in tables:
            tables[oid].columns.append(Column(name=name, type=typ, not_null=not_null, attnum=attnum, default=default))
    return list(tables.values())


def collect_views(conn: psycopg.Connection) -> list[View]:
    """Views with their columns and definition: a statement naming a view reads its tables."""
    views: dict[int, View] = {}
    for oid, schema, name, definition in conn.execute(f"""
            SELECT c.oid::int8, n.nspname, c.relname, pg_get_viewdef(c.oid)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'v' AND {USER_SCHEMAS} ORDER BY 2, 3"""):
        views[oid] = View(schema=schema, name=name, definition=definition or "")
    for oid, name, typ, attnum in conn.execute(f"""
            SELECT a.attrelid::int8, a.attname, format_type(a.atttypid, a.atttypmod), a.attnum
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'v' AND a.attnum > 0 AND NOT a.attisdropped AND {USER_SCHEMAS}
            ORDER BY a.attrelid, a.attnum"""):
        if oid in views:
            views[oid].columns.append(Column(name=name, type=typ, attnum=attnum))
    return list(views.values())


def collect_indexes(conn: psycopg.Connection) -> list[Index]:
    # last_idx_scan arrived in 16; read it only where it exists.
    has_last_scan = conn.execute("SELECT 1 FROM pg_attribute WHERE attrelid = 'pg_stat_user_indexes'::regclass "
                                 "AND attname = 'last_idx_scan'").fetchone() is not None
    last_scan = "s.last_idx_scan" if has_last_scan else "NULL::timestamptz"
    rows = conn.execute(f"""
        SELECT n.nspname, ic.relname, tn.nspname || '.' || tc.relname, pg_get_indexdef(i.indexrelid),
               am.amname, i.indnkeyatts, i.indnatts,
               ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnatts) k),
               ARRAY(SELECT coalesce(oc.opcname, '') FROM unnest(i.indclass::oid[]) WITH ORDINALITY u(opc, ord)
                     LEFT JOIN pg_opclass oc ON oc.oid = u.opc ORDER BY u.ord),
               pg_get_expr(i.indpred, i.indrelid, true), i.indisunique, i.indisprimary, i.indisexclusion,
               i.indisvalid, i.indisready, con.conname, con.contype::text, pg_relation_size(i.indexrelid),
               coalesce(s.idx_scan, 0), coalesce(s.idx_tup_read, 0), coalesce(s.idx_tup_fetch, 0), {last_scan}
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
        JOIN pg_class tc ON tc.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
        JOIN pg_am am ON am.oid = ic.relam
        LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.contype IN ('p', 'u', 'x')
        LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
        WHERE {USER_SCHEMAS.replace('n.nspname', 'tn.nspname')}
        ORDER BY 3, 2""").fetchall()
    indexes = []
    for r in rows:
        nkey = int(r[5])
        cols = list(r[7])
        indexes.append(Index(
            schema=r[0], name=r[1], table=r[2], definition=r[3], method=r[4], columns=cols[:nkey],
            include_columns=cols[nkey:], opclasses=list(r[8])[:nkey], predicate=r[9], is_unique=r[10],
            is_primary=r[11], is_exclusion=r[12], is_valid=r[13], is_ready=r[14], constraint_name=r[15],
            constraint_type=r[16], bytes=int(r[17]), idx_scan=int(r[18]), idx_tup_read=int(r[19]),
            idx_tup_fetch=int(r[20]), last_idx_scan=_iso(r[21])))
    return indexes


def collect_foreign_keys(conn: psycopg.Connection) -> list[ForeignKey]:
    rows = conn.execute(f"""
        SELECT con.conname, n.nspname || '.' || c.relname,
               ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord),
               rn.nspname || '.' || rc.relname,
               ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord),
               con.confdeltype::text, con.confupdtype::text, con.convalidated
        FROM pg_constraint con
        JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
        WHERE con.contype = 'f' AND {USER_SCHEMAS}
        ORDER BY 2, 1""").fetchall()
    return [ForeignKey(name=r[0], table=r[1], columns=list(r[2]), ref_table=r[3], ref_columns=list(r[4]),
                       on_delete=r[5], on_update=r[6], validated=r[7]) for r in rows]


def collect_column_stats(conn: psycopg.Connection, tables: list[str]) -> list[ColumnStats]:
    """pg_stats for the given schema-qualified tables.

    The value arrays are anyarray, which only casts to text; going through text[]
    keeps every element type readable without knowing it.
    """
    if not tables:
        return []
    rows = conn.execute("""
        SELECT schemaname || '.' || tablename, attname, null_frac, n_distinct, avg_width, correlation,
               most_common_vals::text::text[], most_common_freqs::float8[], histogram_bounds::text::text[]
        FROM pg_stats
        WHERE schemaname || '.' || tablename = ANY(%s)
        ORDER BY 1, 2""", (tables,)).fetchall()
    return [ColumnStats(table=r[0], column=r[1], null_frac=r[2], n_distinct=r[3], avg_width=r[4], correlation=r[5],
                        most_common_vals=r[6], most_common_freqs=r[7], histogram_bounds=r[8]) for r in rows]


def collect_extended_statistics(conn: psycopg.Connection) -> list[ExtendedStatistic]:
    rows = conn.execute(f"""
        SELECT s.stxname, n.nspname || '.' || c.relname,
               ARRAY(SELECT a.attname FROM unnest(s.stxkeys) k JOIN pg_attribute a
                     ON a.attrelid = s.stxrelid AND a.attnum = k),
               ARRAY(SELECT k::text FROM unnest(s.stxkind) k)
        FROM pg_statistic_ext s JOIN pg_class c ON c.oid = s.stxrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {USER_SCHEMAS}""").fetchall()
    return [ExtendedStatistic(name=r[0], table=r[1], columns=list(r[2]), kinds=list(r[3])) for r in rows]
