#!/usr/bin/env python3
"""The cost of quorum inserts into the replicated ClickHouse cluster, against plain inserts in
the same run.

Starts ZooKeeper and 2 shards x 2 replicas of clickhouse-server on free loopback ports (in a
temporary directory, removed at the end), applies the shipped DDL (deploy/clickhouse/cluster/
shard.sql on every node, distributed.sql on the first), then inserts through the Distributed
table `tributary.readings` with insert_distributed_sync=1, as the aggregator does: N inserts of
R rows without insert_quorum (plain: answered once one replica of each shard has the rows) and
N with insert_quorum=2 (answered once both replicas of each shard have them), alternating in
rounds so that both see the same noise on a shared machine. Rows are TabSeparated in the
readings schema, distinct in every insert (a replicated table drops an insert whose block it
has seen before). Prints inserts/s, rows/s and per-insert latency of each, and quorum/plain.

  python3 bench/clickhouse-quorum.py [--inserts 200] [--rows 1000] [--round 10] [--keep DIR]

Needs clickhouse-server and zookeeper (scripts/install-deps.sh); standard library only.
"""
import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

from loopback import free_port, wait_listening  # bench/loopback.py, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER_DDL = os.path.join(ROOT, "deploy", "clickhouse", "cluster")
USER, PASSWORD = "tributary", "bench-password"
ZK_JARS = ["zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar", "slf4j-simple.jar"]


def wait_serving(port, timeout=60):
    """Waits until ZooKeeper takes sessions: its port opens before it has loaded its data."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"srvr")
                if b"Mode: " in s.recv(4096):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"ZooKeeper on 127.0.0.1:{port} does not serve after {timeout} s")


class Cluster:
    """ZooKeeper and shards x replicas servers, each node with its own directory."""

    def __init__(self, directory, shards=2, replicas=2):
        self.directory = directory
        self.processes = []
        zk = os.path.join(directory, "zookeeper")
        os.makedirs(os.path.join(zk, "data"))
        self.zk_port = free_port()
        with open(os.path.join(zk, "zoo.cfg"), "w") as f:
            f.write(f"tickTime=500\ndataDir={zk}/data\nclientPort={self.zk_port}\nclientPortAddress=127.0.0.1\n"
                    "maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=srvr\n")
        classpath = ":".join("/usr/share/java/" + jar for jar in ZK_JARS)
        self.spawn(["java", "-Xmx128m", "-XX:+UseSerialGC", "-cp", classpath,
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain", f"{zk}/zoo.cfg"], f"{zk}/server.log")
        wait_serving(self.zk_port)
        self.nodes = [[{"tcp": free_port(), "http": free_port(), "interserver": free_port(), "shard": s + 1, "replica": f"r{r + 1}"}
                       for r in range(replicas)] for s in range(shards)]
        remote = "\n".join(
            "<shard><internal_replication>true</internal_replication>"
            + "".join(f"<replica><host>127.0.0.1</host><port>{n['tcp']}</port><user>{USER}</user><password>{PASSWORD}</password></replica>"
                      for n in shard) + "</shard>" for shard in self.nodes)
        for node in self.servers:
            d = os.path.join(directory, f"shard{node['shard']}-{node['replica']}")
            os.makedirs(os.path.join(d, "data"))
            with open(os.path.join(d, "config.xml"), "w") as f:
                f.write(f"""<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{node['http']}</http_port>
  <tcp_port>{node['tcp']}</tcp_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>{node['interserver']}</interserver_http_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/data/tmp/</tmp_path>
  <user_files_path>{d}/data/user_files/</user_files_path>
  <format_schema_path>{d}/data/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <mlock_executable>false</mlock_executable>
  <remote_servers><tributary>{remote}</tributary></remote_servers>
  <macros><shard>{node['shard']}</shard><replica>{node['replica']}</replica></macros>
  <zookeeper><node><host>127.0.0.1</host><port>{self.zk_port}</port></node><session_timeout_ms>10000</session_timeout_ms></zookeeper>
</yandex>
""")
            with open(os.path.join(d, "users.xml"), "w") as f:
                f.write(f"""<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><{USER}><password>{PASSWORD}</password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></{USER}></users>
  <quotas><default></default></quotas>
</yandex>
""")
            self.spawn([shutil.which("clickhouse-server") or "/usr/sbin/clickhouse-server", f"--config-file={d}/config.xml"],
                       f"{d}/stdout.log")
        for node in self.servers:
            wait_listening(node["http"])

    @property
    def servers(self):
        return [node for shard in self.nodes for node in shard]

    def spawn(self, argv, log):
        with open(log, "ab") as out:
            self.processes.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))

    def stop(self):
        for process in reversed(self.processes):
            process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Client:
    """One keep-alive HTTP connection to a node."""

    def __init__(self, port):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}

    def send(self, body, **parameters):
        query = urllib.parse.urlencode(parameters)
        self.connection.request("POST", "/?" + query if query else "/", body=body, headers=self.headers)
        response = self.connection.getresponse()
        text = response.read().decode(errors="replace")
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {text.strip()[:300]}")
        return text

    def query(self, sql):
        return self.send(sql.encode())


def statements(path):
    """The statements of a .sql file, as the aggregator's tests split them (on ';' at a line's end)."""
    result, current = [], []
    for line in open(path):
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        if stripped.endswith(";"):
            current.append(line.rstrip()[:-1])
            result.append("\n".join(current))
            current = []
        else:
            current.append(line.rstrip())
    return result


def rows(epoch, sequence, count):
    """`count` readings of one batch (epoch, sequence) from one gateway of 50 sensors, as TabSeparated."""
    base = 1_764_000_000_000 + sequence * count
    return "".join(
        f"gw-bench-{sequence % 16}\tsensor-{i % 50}\ttemperature\t{base + i}\t{base + i + 5}\t{20 + (i % 97) / 10}\t\\N\t\\N\tnumber\t"
        f"C\t\\N\tsite/gw-bench-{sequence % 16}/sensor-{i % 50}/temperature\tgw-bench-{sequence % 16}\t{epoch}\t{sequence}\t{i}\n"
        for i in range(count)).encode()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inserts", type=int, default=200, help="inserts of each kind (default 200)")
    parser.add_argument("--rows", type=int, default=1000, help="rows per insert (default 1000)")
    parser.add_argument("--round", type=int, default=10, help="inserts of one kind before switching (default 10)")
    parser.add_argument("--keep", help="put the cluster in this directory and keep it (default: a temporary one, removed)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    for tool in ("clickhouse-server", "java"):
        if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool):
            sys.exit(f"{tool} is not installed: bash scripts/install-deps.sh")
    missing = [jar for jar in ZK_JARS if not os.path.exists("/usr/share/java/" + jar)]
    if missing:
        sys.exit(f"/usr/share/java/{missing[0]} is missing: bash scripts/install-deps.sh")

    directory = args.keep or tempfile.mkdtemp(prefix="tributary-quorum-bench-")
    os.makedirs(directory, exist_ok=True)
    cluster = Cluster(directory)
    try:
        for node in cluster.servers:
            client = Client(node["http"])
            for statement in statements(os.path.join(CLUSTER_DDL, "shard.sql")) + statements(os.path.join(CLUSTER_DDL, "distributed.sql")):
                client.query(statement)
        entry = Client(cluster.nodes[0][0]["http"])
        insert = "INSERT INTO tributary.readings FORMAT TabSeparated"
        kinds = {"plain": {"insert_distributed_sync": "1"},
                 "quorum": {"insert_distributed_sync": "1", "insert_quorum": "2", "insert_quorum_timeout": "60000"}}
        # Every insert's rows are made before the clock starts; each kind gets its own epoch.
        bodies = {kind: [rows(f"epoch-{kind}", n, args.rows) for n in range(args.inserts)] for kind in kinds}
        # Warm up both paths (connections between the nodes, the first parts).
        for kind, settings in kinds.items():
            entry.send(rows(f"warmup-{kind}", 0, args.rows), query=insert, **settings)
        latencies = {kind: [] for kind in kinds}
        elapsed = {kind: 0.0 for kind in kinds}
        done = {kind: 0 for kind in kinds}
        order = list(kinds)
        while any(done[kind] < args.inserts for kind in kinds):
            for kind in order:
                for _ in range(min(args.round, args.inserts - done[kind])):
                    started = time.perf_counter()
                    entry.send(bodies[kind][done[kind]], query=insert, **kinds[kind])
                    took = time.perf_counter() - started
                    latencies[kind].append(took)
                    elapsed[kind] += took
                    done[kind] += 1
            order.reverse()
        # Plain inserts may still be on their way to the other replica of their shard.
        for node in cluster.servers:
            Client(node["http"]).query("SYSTEM SYNC REPLICA tributary.readings_local")
        expected = (args.inserts + 1) * args.rows * len(kinds)
        total = int(entry.query("SELECT count() FROM tributary.readings FINAL"))
        per_replica = [[int(Client(node["http"]).query("SELECT count() FROM tributary.readings_local FINAL")) for node in shard]
                       for shard in cluster.nodes]
        if total != expected or any(len(set(shard)) != 1 for shard in per_replica):
            sys.exit(f"the cluster holds {total} rows (per shard and replica {per_replica}), expected {expected}")

        figures = {}
        for kind in kinds:
            ms = sorted(1000 * t for t in latencies[kind])
            figures[kind] = {"inserts_per_s": args.inserts / elapsed[kind], "rows_per_s": args.inserts * args.rows / elapsed[kind],
                             "p50_ms": statistics.median(ms), "p90_ms": ms[int(0.9 * (len(ms) - 1))]}
        ratio = figures["quorum"]["rows_per_s"] / figures["plain"]["rows_per_s"]
        print(f"2 shards x 2 replicas, ZooKeeper, {args.inserts} inserts of {args.rows} rows each way through the Distributed "
              f"table (insert_distributed_sync=1), alternating every {args.round}; every row read back once under FINAL")
        for kind in kinds:
            f = figures[kind]
            print(f"  {kind:<7} {f['inserts_per_s']:7.1f} inserts/s  {f['rows_per_s']:10.0f} rows/s  "
                  f"per insert p50 {f['p50_ms']:.1f} ms, p90 {f['p90_ms']:.1f} ms")
        print(f"  quorum/plain throughput: {ratio:.2f}x")
        if args.json:
            with open(args.json, "w") as out:
                json.dump({"inserts": args.inserts, "rows": args.rows, "round": args.round, "figures": figures,
                           "ratio_quorum_over_plain": ratio}, out, indent=2)
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
