"""Runs vscc's SQL on a current ClickHouse (chdb, an in-process ClickHouse from PyPI) for
tests/api/current_clickhouse.rs: the migrations (single-server form), then the rows exported
from ClickHouse 18.16, then every query of the job; prints each query's answer as JSON lines.

    python3 tests/chdb/run.py job.json

job.json: {"database": "...", "statements": [sql, ...], "load": [{"table": t, "file": tsv}],
           "queries": [{"name": n, "sql": sql}]}
Each output line: {"name": n, "rows": [...]} or {"name": n, "error": "..."}.
"""
import json
import sys
import tempfile

from chdb import session


def main():
    job = json.load(open(sys.argv[1]))
    db = job["database"]
    with tempfile.TemporaryDirectory() as dir:
        s = session.Session(dir)
        s.query(f"CREATE DATABASE IF NOT EXISTS {db}")
        s.query(f"USE {db}")
        for sql in job["statements"]:
            try:
                s.query(sql)
            except Exception as e:  # the test names the statement
                print(json.dumps({"name": "statement", "sql": sql, "error": str(e)}), flush=True)
                return 1
        for load in job["load"]:
            s.query(
                f"INSERT INTO {db}.{load['table']} SELECT * FROM file('{load['file']}', "
                "'TabSeparatedWithNamesAndTypes')"
            )
        for q in job["queries"]:
            try:
                out = s.query(q["sql"], "JSONCompact")
                data = json.loads(out.bytes() or b'{"data": []}')
                print(json.dumps({"name": q["name"], "rows": data["data"]}, ensure_ascii=False), flush=True)
            except Exception as e:
                print(json.dumps({"name": q["name"], "error": str(e)}, ensure_ascii=False), flush=True)
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
