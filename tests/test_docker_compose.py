"""docker-compose.yml and docker/Dockerfile, checked statically (no Docker engine here):
PostgreSQL of the current major with pg_stat_statements preloaded and HypoPG installed,
a health check, and the demo service waiting for it."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CURRENT_MAJOR = 18


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_database_service_preloads_pg_stat_statements_and_has_a_healthcheck():
    db = _compose()["services"]["db"]
    command = " ".join(db["command"])
    assert re.search(r"shared_preload_libraries=\S*pg_stat_statements", command)
    assert "compute_query_id=on" in command
    test = db["healthcheck"]["test"]
    assert "pg_isready" in " ".join(test) and db["healthcheck"]["retries"] >= 5
    assert (ROOT / db["build"]["context"]).is_dir()
    assert (ROOT / db["build"]["context"] / db["build"]["dockerfile"]).is_file()
    assert db["environment"]["POSTGRES_DB"] == "shop"
    assert all(p.startswith("127.0.0.1:") for p in db.get("ports", [])), "do not publish the demo server widely"


def test_dockerfile_uses_the_current_major_and_installs_hypopg():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert f"ARG PG_MAJOR={CURRENT_MAJOR}" in dockerfile
    assert re.search(r"FROM postgres:\$\{PG_MAJOR\}\S* AS db", dockerfile)
    assert "postgresql-${PG_MAJOR}-hypopg" in dockerfile
    stages = re.findall(r"^FROM \S+ AS (\w+)", dockerfile, re.M)
    assert {"db", "app"} <= set(stages)
    for src in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert (ROOT / src.rstrip("/")).exists(), f"COPY source {src} missing"
    init = (ROOT / "docker" / "initdb").glob("*.sql")
    sql = "\n".join(p.read_text() for p in init)
    assert "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" in sql and "CREATE EXTENSION IF NOT EXISTS hypopg" in sql


def test_demo_service_waits_for_a_healthy_database_and_runs_the_demo_against_it():
    compose = _compose()
    demo = compose["services"]["demo"]
    assert demo["depends_on"]["db"]["condition"] == "service_healthy"
    assert demo["build"]["target"] == "app" and demo["build"]["dockerfile"] == "docker/Dockerfile"
    assert demo["command"][0] == "demo" and "--dsn" in demo["command"]
    dsn = demo["command"][demo["command"].index("--dsn") + 1]
    assert "@db:5432/shop" in dsn
    assert any(v.startswith("./reports:") for v in demo["volumes"])
    stages = re.findall(r"^FROM \S+ AS (\w+)", (ROOT / "docker" / "Dockerfile").read_text(), re.M)
    for service in compose["services"].values():
        assert service["build"]["target"] in stages
