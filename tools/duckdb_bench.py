"""Times the aggregator's canned reports on DuckDB, the peer of
`aggregator bench reports`: the same SQL (written by that command in DuckDB's
dialect), over the same Parquet files, with the same number of threads.

usage: duckdb_bench.py SQL_DIR REPEAT THREADS

SQL_DIR holds setup.sql (views over read_parquet) and one <report>.sql per
report. Prints one JSON line per report, like the aggregator:
{"engine": "duckdb", "report": NAME, "seconds": [...], "rows": N}
"""

import json
import pathlib
import sys
import time

import duckdb


def statements(text):
    return [s.strip() for s in text.split(";\n") if s.strip().rstrip(";")]


def main():
    sql_dir = pathlib.Path(sys.argv[1])
    repeat = int(sys.argv[2])
    threads = int(sys.argv[3])
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    for statement in statements((sql_dir / "setup.sql").read_text()):
        con.execute(statement)
    for path in sorted(sql_dir.glob("*.sql")):
        if path.stem == "setup":
            continue
        queries = statements(path.read_text())
        times = []
        rows = 0
        for _ in range(repeat):
            started = time.perf_counter()
            rows = 0
            for query in queries:
                rows += len(con.execute(query.rstrip(";")).fetchall())
            times.append(time.perf_counter() - started)
        print(json.dumps({"engine": "duckdb", "report": path.stem,
                          "seconds": [round(t, 4) for t in times], "rows": rows}),
              flush=True)


if __name__ == "__main__":
    main()
