#!/usr/bin/env python3
"""The sizes docs/scale.md is built from, measured with the release binaries on loopback.

- wire: bytes each way between gateways and an aggregator per reading, for batches of 10, 100
  and 1,000 readings (the TCP payload: HTTP heads, the compressed request, the ack), counted by a
  relay of bytes between `tributary-sim fleet` and the aggregator;
- buffer: bytes of an agent's buffer (buffer.sqlite with its WAL) per reading held while its
  aggregator is unreachable, from `tributary-sim sensors` through mosquitto;
- spool: bytes of a relay's spool (spool.sqlite with its WAL) per reading held while its
  upstream is unreachable, for batches of 10 and 100;
- clickhouse: bytes on disk per reading in ClickHouse (18.16, the shipped single-server schema)
  after a fleet's readings are written and merged.

Run: `make bench-scale` (builds the release binaries first), or
`python3 bench/scale-figures.py --bin .build/release`. Prints a table and writes JSON to
bench/results/. Each figure is a size, not a speed: it does not depend on the machine's load.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from loopback import free_port, wait_listening  # bench/loopback.py, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Processes:
    def __init__(self):
        self.running = []

    def start(self, argv, log, **kwargs):
        out = open(log, "ab")
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        self.running.append(process)
        return process

    def stop(self, process):
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.running.remove(process)

    def stop_all(self):
        for process in list(reversed(self.running)):
            self.stop(process)


def file_bytes(path):
    """A SQLite file with its WAL and shared-memory index, as it sits on disk."""
    return sum(os.path.getsize(p) for p in (path, path + "-wal", path + "-shm") if os.path.exists(p))


def aggregator(procs, bin_dir, directory, extra_yaml=""):
    port = free_port()
    os.makedirs(directory, exist_ok=True)
    config = os.path.join(directory, "aggregator.yaml")
    with open(config, "w") as f:
        f.write(f"listen: 127.0.0.1:{port}\ndata_dir: {directory}/data\n{extra_yaml}")
    procs.start([f"{bin_dir}/tributary-aggregator", "--config", config, "--log-level", "warning"], os.path.join(directory, "aggregator.log"))
    wait_listening(port)
    return port


def fleet(bin_dir, url, directory, gateways, batch_size, batches, rate):
    manifest = os.path.join(directory, f"fleet-{batch_size}.jsonl")
    out = subprocess.run([f"{bin_dir}/tributary-sim", "fleet", "--aggregator", url, "--gateways", str(gateways),
                          "--batch-size", str(batch_size), "--batches", str(batches), "--rate", str(rate),
                          "--prefix", f"b{batch_size}", "--manifest", manifest, "--json"], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"tributary-sim fleet failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return report["readings"]


class CountingRelay:
    """Copies bytes between clients and the aggregator on another port, counting each way."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.port = free_port()
        self.up = 0
        self.down = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self.run, daemon=True).start()
        self.ready.wait()

    def run(self):
        asyncio.set_event_loop(self.loop)

        async def pipe(reader, writer, up):
            try:
                while data := await reader.read(65536):
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        async def handle(client_reader, client_writer):
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(pipe(client_reader, server_writer, True), pipe(server_reader, client_writer, False))

        async def serve():
            server = await asyncio.start_server(handle, "127.0.0.1", self.port)
            self.ready.set()
            async with server:
                await server.serve_forever()

        self.loop.run_until_complete(serve())


def measure_wire(procs, bin_dir, work):
    port = aggregator(procs, bin_dir, os.path.join(work, "wire"))
    results = []
    for batch_size, batches in ((10, 100), (100, 50), (1000, 10)):
        relay = CountingRelay(port)
        readings = fleet(bin_dir, f"http://127.0.0.1:{relay.port}", os.path.join(work, "wire"), 20, batch_size, batches, batch_size * 10)
        results.append({"batch_readings": batch_size, "readings": readings, "bytes_up": relay.up, "bytes_down": relay.down,
                        "up_per_reading": relay.up / readings, "down_per_reading": relay.down / readings,
                        "up_per_request": relay.up / (readings / batch_size)})
    return results


def measure_spool(procs, bin_dir, work):
    results = []
    for batch_size, batches in ((10, 200), (100, 100)):
        directory = os.path.join(work, f"spool-{batch_size}")
        dead = free_port()  # nothing listens: the relay keeps everything
        port = aggregator(procs, bin_dir, directory, f"sink: none\nrelay_id: city-bench\nupstream:\n  url: http://127.0.0.1:{dead}\n")
        readings = fleet(bin_dir, f"http://127.0.0.1:{port}", directory, 20, batch_size, batches, batch_size * 10)
        procs.stop(procs.running[-1])
        size = file_bytes(os.path.join(directory, "data", "spool.sqlite"))
        results.append({"batch_readings": batch_size, "readings": readings, "bytes": size, "per_reading": size / readings})
    return results


def measure_buffer(procs, bin_dir, work, messages=20000):
    directory = os.path.join(work, "buffer")
    os.makedirs(directory)
    broker_port = free_port()
    with open(os.path.join(directory, "mosquitto.conf"), "w") as f:
        f.write(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\n")
    procs.start(["mosquitto", "-c", os.path.join(directory, "mosquitto.conf")], os.path.join(directory, "mosquitto.log"))
    wait_listening(broker_port)
    subscriptions = subprocess.run([f"{bin_dir}/tributary-sim", "sensors", "--print-subscriptions", "--format", "mixed"],
                                   capture_output=True, text=True, check=True).stdout
    dead = free_port()
    with open(os.path.join(directory, "agent.yaml"), "w") as f:
        f.write(f"gateway_id: gw-size\ndata_dir: {directory}/agent\nmqtt:\n  broker: mqtt://127.0.0.1:{broker_port}\n"
                f"{subscriptions.rstrip()}\naggregator:\n  url: http://127.0.0.1:{dead}\n")
    agent = procs.start([f"{bin_dir}/tributary-agent", "--config", os.path.join(directory, "agent.yaml")],
                        os.path.join(directory, "agent.log"))
    deadline = time.monotonic() + 30
    while "subscriptions confirmed" not in open(os.path.join(directory, "agent.log")).read():
        if time.monotonic() > deadline:
            sys.exit("the agent did not subscribe within 30 s")
        time.sleep(0.05)
    manifest = os.path.join(directory, "sensors.jsonl")
    subprocess.run([f"{bin_dir}/tributary-sim", "sensors", "--broker", f"mqtt://127.0.0.1:{broker_port}", "--gateway", "gw-size",
                    "--format", "mixed", "--sensors", "50", "--rate", "5000", "--count", str(messages), "--manifest", manifest],
                   capture_output=True, check=True, timeout=300)
    with open(manifest) as f:
        readings = sum(1 for line in f if line.startswith('{"g":'))
    # Stopped cleanly once it has everything: the buffer then holds each reading once.
    buffer = os.path.join(directory, "agent", "buffer.sqlite")
    time.sleep(3)
    procs.stop(agent)
    size = file_bytes(buffer)
    return {"messages": messages, "readings": readings, "bytes": size, "per_reading": size / readings}


CLICKHOUSE_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/data/tmp/</tmp_path>
  <user_files_path>{d}/data/user_files/</user_files_path>
  <format_schema_path>{d}/data/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
  <mlock_executable>false</mlock_executable>
</yandex>
"""
CLICKHOUSE_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><tributary><password>bench</password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></tributary></users>
  <quotas><default></default></quotas>
</yandex>
"""


def clickhouse_query(http_port, sql):
    request = urllib.request.Request(f"http://127.0.0.1:{http_port}/?user=tributary&password=bench", data=sql.encode())
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read().decode()


def measure_clickhouse(procs, bin_dir, work):
    server = shutil.which("clickhouse-server") or "/usr/sbin/clickhouse-server"
    if not os.path.exists(server):
        return None
    d = os.path.join(work, "clickhouse")
    os.makedirs(os.path.join(d, "data"))
    http, tcp = free_port(), free_port()
    with open(os.path.join(d, "config.xml"), "w") as f:
        f.write(CLICKHOUSE_CONFIG.format(d=d, http=http, tcp=tcp))
    with open(os.path.join(d, "users.xml"), "w") as f:
        f.write(CLICKHOUSE_USERS)
    procs.start([server, f"--config-file={d}/config.xml"], os.path.join(d, "stdout.log"))
    wait_listening(http)
    port = aggregator(procs, bin_dir, os.path.join(work, "ch-aggregator"), f"sink: clickhouse://tributary:bench@127.0.0.1:{http}/tributary\n")
    readings = fleet(bin_dir, f"http://127.0.0.1:{port}", work, 50, 100, 40, 1000)
    clickhouse_query(http, "OPTIMIZE TABLE tributary.readings FINAL")
    row = clickhouse_query(http, "SELECT sum(rows), sum(bytes_on_disk), sum(data_uncompressed_bytes) FROM system.parts "
                                 "WHERE database = 'tributary' AND table = 'readings' AND active FORMAT TSV").split()
    rows, on_disk, uncompressed = int(row[0]), int(row[1]), int(row[2])
    return {"readings": readings, "rows": rows, "bytes_on_disk": on_disk, "per_reading": on_disk / max(rows, 1),
            "uncompressed_per_reading": uncompressed / max(rows, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build", "release"))
    args = parser.parse_args()
    procs = Processes()
    work = tempfile.mkdtemp(prefix="tributary-scale-")
    try:
        figures = {"wire": measure_wire(procs, args.bin, work)}
        procs.stop_all()
        figures["spool"] = measure_spool(procs, args.bin, work)
        procs.stop_all()
        figures["buffer"] = measure_buffer(procs, args.bin, work)
        procs.stop_all()
        figures["clickhouse"] = measure_clickhouse(procs, args.bin, work)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    print("| figure | measured |\n|---|---|")
    for w in figures["wire"]:
        print(f"| wire, batches of {w['batch_readings']} | {w['up_per_reading']:.1f} B up and {w['down_per_reading']:.1f} B down per reading "
              f"({w['up_per_request']:.0f} B up per request) |")
    for s in figures["spool"]:
        print(f"| relay spool, batches of {s['batch_readings']} | {s['per_reading']:.1f} B per reading ({s['readings']} readings) |")
    b = figures["buffer"]
    print(f"| agent buffer | {b['per_reading']:.1f} B per reading ({b['readings']} readings of {b['messages']} mixed messages) |")
    if c := figures["clickhouse"]:
        print(f"| ClickHouse 18.16 on disk | {c['per_reading']:.1f} B per reading compressed, {c['uncompressed_per_reading']:.1f} B uncompressed ({c['rows']} rows) |")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
    path = os.path.join(ROOT, "bench", "results", f"{stamp}-scale-figures.json")
    with open(path, "w") as f:
        json.dump(figures, f, indent=2)
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
