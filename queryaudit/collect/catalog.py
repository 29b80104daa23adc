"""The catalog and its statistics: tables, columns, indexes, foreign keys, pg_stats."""

from __future__ import annotations

import psycopg

from queryaudit.connect import named_rows as _rows
from queryaudit.snapshot import Column, ColumnStats, ExtendedStatistic, ForeignKey, Index, Table, View

USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname !~ '^pg_temp_'"


def _iso(value):
    return value.isoformat() if value is not None and hasattr(value, "isoformat") else value


TIMES = ("last_analyze", "last_autoanalyze", "last_vacuum", "last_autovacuum", "last_idx_scan")


def _iso_times(row: dict) -> dict:
    return {k: _iso(v) if k in TIMES else v for k, v in row.items()}


def collect_tables(conn: psycopg.Connection) -> list[Table]:
    rows = _rows(
        conn,
        f"""
        SELECT n.nspname AS schema, c.relname AS name, c.oid::int8 AS oid, c.relkind::text AS kind,
               c.reltuples::float8 AS reltuples, c.relpages::int8 AS relpages,
               pg_total_relation_size(c.oid) AS total_bytes, pg_relation_size(c.oid) AS table_bytes,
               coalesce(s.seq_scan, 0) AS seq_scan, coalesce(s.seq_tup_read, 0) AS seq_tup_read,
               coalesce(s.idx_scan, 0) AS idx_scan, coalesce(s.idx_tup_fetch, 0) AS idx_tup_fetch,
               coalesce(s.n_tup_ins, 0) AS n_tup_ins, coalesce(s.n_tup_upd, 0) AS n_tup_upd,
               coalesce(s.n_tup_del, 0) AS n_tup_del, coalesce(s.n_tup_hot_upd, 0) AS n_tup_hot_upd,
               coalesce(s.n_live_tup, 0) AS n_live_tup, coalesce(s.n_dead_tup, 0) AS n_dead_tup,
               coalesce(s.n_mod_since_analyze, 0) AS n_mod_since_analyze,
               s.last_analyze, s.last_autoanalyze, s.last_vacuum, s.last_autovacuum,
               coalesce(c.reloptions, '{{}}') AS reloptions,
               (SELECT pn.nspname || '.' || pc.relname FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent
                JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE i.inhrelid = c.oid AND c.relispartition)
                 AS partition_of
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
        WHERE c.relkind IN ('r', 'p', 'm') AND {USER_SCHEMAS}
        ORDER BY n.nspname, c.relname""",
    )
    tables = {r["oid"]: Table(**{**_iso_times(r), "reloptions": list(r["reloptions"])}) for r in rows}
    for r in _rows(
        conn,
        f"""
            SELECT a.attrelid::int8 AS oid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
                   a.attnotnull AS not_null, a.attnum, pg_get_expr(d.adbin, d.adrelid) AS default
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE c.relkind IN ('r', 'p', 'm') AND a.attnum > 0 AND NOT a.attisdropped AND {USER_SCHEMAS}
            ORDER BY a.attrelid, a.attnum""",
    ):
        oid = r.pop("oid")
        if oid in tables:
            tables[oid].columns.append(Column(**r))
    return list(tables.values())


def collect_views(conn: psycopg.Connection) -> list[View]:
    """Views with their columns and definition: a statement naming a view reads its tables."""
    views: dict[int, View] = {}
    for r in _rows(
        conn,
        f"""
            SELECT c.oid::int8 AS oid, n.nspname AS schema, c.relname AS name,
                   coalesce(pg_get_viewdef(c.oid), '') AS definition
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'v' AND {USER_SCHEMAS} ORDER BY 2, 3""",
    ):
        oid = r.pop("oid")
        views[oid] = View(**r)
    for r in _rows(
        conn,
        f"""
            SELECT a.attrelid::int8 AS oid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
                   a.attnum
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'v' AND a.attnum > 0 AND NOT a.attisdropped AND {USER_SCHEMAS}
            ORDER BY a.attrelid, a.attnum""",
    ):
        oid = r.pop("oid")
        if oid in views:
            views[oid].columns.append(Column(**r))
    return list(views.values())


def collect_indexes(conn: psycopg.Connection) -> list[Index]:
    # last_idx_scan arrived in 16; read it only where it exists.
    has_last_scan = bool(
        _rows(
            conn,
            "SELECT 1 FROM pg_attribute WHERE attrelid = 'pg_stat_user_indexes'::regclass "
            "AND attname = 'last_idx_scan'",
        )
    )
    last_scan = "s.last_idx_scan" if has_last_scan else "NULL::timestamptz"
    rows = _rows(
        conn,
        f"""
        SELECT n.nspname AS schema, ic.relname AS name, tn.nspname || '.' || tc.relname AS table,
               pg_get_indexdef(i.indexrelid) AS definition, am.amname AS method, i.indnkeyatts AS nkey,
               ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnatts) k)
                 AS all_columns,
               ARRAY(SELECT coalesce(oc.opcname, '') FROM unnest(i.indclass::oid[]) WITH ORDINALITY u(opc, ord)
                     LEFT JOIN pg_opclass oc ON oc.oid = u.opc ORDER BY u.ord) AS opclasses,
               pg_get_expr(i.indpred, i.indrelid, true) AS predicate, i.indisunique AS is_unique,
               i.indisprimary AS is_primary, i.indisexclusion AS is_exclusion, i.indisvalid AS is_valid,
               i.indisready AS is_ready, con.conname AS constraint_name, con.contype::text AS constraint_type,
               pg_relation_size(i.indexrelid) AS bytes, coalesce(s.idx_scan, 0) AS idx_scan,
               coalesce(s.idx_tup_read, 0) AS idx_tup_read, coalesce(s.idx_tup_fetch, 0) AS idx_tup_fetch,
               {last_scan} AS last_idx_scan
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
        JOIN pg_class tc ON tc.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
        JOIN pg_am am ON am.oid = ic.relam
        LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.contype IN ('p', 'u', 'x')
        LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
        WHERE {USER_SCHEMAS.replace("n.nspname", "tn.nspname")}
        ORDER BY 3, 2""",
    )
    indexes = []
    for r in rows:
        nkey, cols = r.pop("nkey"), r.pop("all_columns")
        indexes.append(
            Index(
                **{
                    **_iso_times(r),
                    "columns": cols[:nkey],
                    "include_columns": cols[nkey:],
                    "opclasses": r["opclasses"][:nkey],
                }
            )
        )
    return indexes


def collect_foreign_keys(conn: psycopg.Connection) -> list[ForeignKey]:
    rows = _rows(
        conn,
        f"""
        SELECT con.conname AS name, n.nspname || '.' || c.relname AS table,
               ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord)
                 AS columns,
               rn.nspname || '.' || rc.relname AS ref_table,
               ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord)
                 AS ref_columns,
               con.confdeltype::text AS on_delete, con.confupdtype::text AS on_update, con.convalidated AS validated
        FROM pg_constraint con
        JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
        WHERE con.contype = 'f' AND {USER_SCHEMAS}
        ORDER BY 2, 1""",
    )
    return [ForeignKey(**r) for r in rows]


def collect_column_stats(conn: psycopg.Connection, tables: list[str]) -> list[ColumnStats]:
    """pg_stats for the given schema-qualified tables.

    The value arrays are anyarray, which only casts to text; going through text[]
    keeps every element type readable without knowing it.
    """
    if not tables:
        return []
    rows = _rows(
        conn,
        """
        SELECT schemaname || '.' || tablename AS table, attname AS column, null_frac, n_distinct, avg_width,
               correlation, most_common_vals::text::text[] AS most_common_vals,
               most_common_freqs::float8[] AS most_common_freqs, histogram_bounds::text::text[] AS histogram_bounds
        FROM pg_stats
        WHERE schemaname || '.' || tablename = ANY(%s)
        ORDER BY 1, 2""",
        (tables,),
    )
    return [ColumnStats(**r) for r in rows]


def collect_extended_statistics(conn: psycopg.Connection) -> list[ExtendedStatistic]:
    rows = _rows(
        conn,
        f"""
        SELECT s.stxname AS name, n.nspname || '.' || c.relname AS table,
               ARRAY(SELECT a.attname FROM unnest(s.stxkeys) k JOIN pg_attribute a
                     ON a.attrelid = s.stxrelid AND a.attnum = k) AS columns,
               ARRAY(SELECT k::text FROM unnest(s.stxkind) k) AS kinds
        FROM pg_statistic_ext s JOIN pg_class c ON c.oid = s.stxrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {USER_SCHEMAS}""",
    )
    return [ExtendedStatistic(**r) for r in rows]
