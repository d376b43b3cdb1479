#!/usr/bin/env python3
"""Writes Tributary's Grafana dashboards (deploy/grafana/*.json) for the Prometheus data source.

    python3 deploy/grafana/make-dashboards.py            # rewrite the JSON next to this script
    python3 deploy/grafana/make-dashboards.py --out DIR  # write them to DIR instead

The JSON is committed; edit this script, run it, and commit both. The alert rules test
(Tests/IntegrationTests/AlertRulesTests.swift) checks that the committed JSON is what this
script writes, that promtool accepts every expression, and that every tributary_ metric the
dashboards name is one a live aggregator, relay or agent exports.

Conventions the expressions follow (see docs/operations.md, "Dashboards"):
- Per-gateway series (tributary_gateway_*) exist only for the gateways metrics.per_gateway
  names (top:N by default), and a gateway behind a relay has them at the relay and at the
  upstream: they are taken as max by (gateway), stale as min by (gateway) (the alert's rule).
- The tributary_fleet_* histograms count every gateway an aggregator hears from directly, at
  scrape time: they are gauges (no rate()); summing them over aggregators counts each gateway
  where it reports. Their le labels are matched as "600|600.0" (Prometheus 3 writes 600.0).
- Agent metrics (tributary_agent_*) reach a central Prometheus only through a collector on the
  gateway that adds a gateway label (deploy/prometheus/prometheus.yml).
"""

import argparse
import json
import os

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
AGG = 'instance=~"$instance"'


class Layout:
    """Places panels left to right in rows of 24 grid units; a row panel starts a new line."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.line_height = 0
        self.next_id = 1

    def _newline(self):
        self.y += self.line_height
        self.x = 0
        self.line_height = 0

    def row(self, title, collapsed=False):
        self._newline()
        self.panels.append({"collapsed": collapsed, "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                            "id": self._id(), "panels": [], "title": title, "type": "row"})
        self.y += 1

    def add(self, panel, w, h):
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.line_height = max(self.line_height, h)

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i


def targets(*queries):
    """(expr, legend) pairs as Prometheus targets A, B, C..."""
    out = []
    for i, (expr, legend) in enumerate(queries):
        out.append({"datasource": DS, "editorMode": "code", "expr": expr, "legendFormat": legend,
                    "range": True, "refId": chr(ord("A") + i)})
    return out


def timeseries(title, description, unit, *queries, stack=False, min_zero=True):
    custom = {"drawStyle": "line", "fillOpacity": 10, "lineWidth": 1, "showPoints": "never",
              "spanNulls": False, "stacking": {"group": "A", "mode": "normal" if stack else "none"}}
    defaults = {"custom": custom, "unit": unit}
    if min_zero:
        defaults["min"] = 0
    return {"datasource": DS, "description": description, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}},
            "targets": targets(*queries), "title": title, "type": "timeseries"}


def stat(title, description, unit, expr, thresholds=None, mappings=None):
    steps = [{"color": "green", "value": None}] + [{"color": c, "value": v} for v, c in (thresholds or [])]
    defaults = {"mappings": mappings or [], "thresholds": {"mode": "absolute", "steps": steps}, "unit": unit}
    return {"datasource": DS, "description": description, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"colorMode": "value", "graphMode": "area", "justifyMode": "auto", "orientation": "auto",
                        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "textMode": "auto"},
            "targets": targets((expr, "")), "title": title, "type": "stat"}


def heatmap(title, description, unit, expr):
    target = targets((expr, "{{le}}"))[0]
    target["format"] = "heatmap"
    return {"datasource": DS, "description": description, "fieldConfig": {"defaults": {}, "overrides": []},
            "options": {"calculate": False, "cellGap": 1, "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                        "legend": {"show": True}, "tooltip": {"show": True, "yHistogram": False},
                        "yAxis": {"axisPlacement": "left", "unit": unit}},
            "targets": [target], "title": title, "type": "heatmap"}


def table(title, description, unit, expr, value_name):
    target = targets((expr, ""))[0]
    target.update({"format": "table", "instant": True, "range": False})
    return {"datasource": DS, "description": description, "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"showHeader": True, "sortBy": [{"desc": True, "displayName": value_name}]},
            "targets": [target], "title": title, "type": "table",
            "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True},
                                                                "renameByName": {"Value": value_name}}}]}


def datasource_variable():
    return {"current": {}, "hide": 0, "includeAll": False, "label": "Data source", "multi": False,
            "name": "DS_PROMETHEUS", "options": [], "query": "prometheus", "refresh": 1, "regex": "", "type": "datasource"}


def query_variable(name, label, query, multi, all_value=None):
    variable = {"current": {}, "datasource": DS, "definition": query, "hide": 0, "includeAll": multi,
                "label": label, "multi": multi, "name": name, "options": [],
                "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
                "refresh": 2, "regex": "", "sort": 1, "type": "query"}
    if all_value is not None:
        variable["allValue"] = all_value
    return variable


def dashboard(uid, title, description, layout, variables, links=()):
    return {"annotations": {"list": []}, "description": description, "editable": True, "fiscalYearStartMonth": 0,
            "graphTooltip": 1, "links": list(links), "panels": layout.panels, "refresh": "1m", "schemaVersion": 39,
            "tags": ["tributary"], "templating": {"list": variables}, "time": {"from": "now-6h", "to": "now"},
            "timepicker": {}, "timezone": "", "title": title, "uid": uid, "version": 1}


def lag_quantiles(metric, sel):
    return [(f"histogram_quantile({q}, sum by (le) ({metric}_bucket{{{sel}}}))", f"p{round(q * 100)}") for q in (0.5, 0.9, 0.99)]


def fleet():
    l = Layout()
    l.row("Overview")
    l.add(stat("Gateways", "Gateways in the chosen aggregators' registries, online and stale (a gateway behind a relay counts at the relay and at its upstream).", "short",
               f'sum(tributary_gateways{{{AGG}}})'), 4, 4)
    l.add(stat("Stale gateways", "Gateways silent longer than stale_after_seconds in the chosen aggregators' registries (a gateway that moved is stale at the one it left).", "short",
               f'sum(tributary_gateways{{{AGG},state="stale"}})', [(1, "orange")]), 4, 4)
    l.add(stat("Sinks down", "Aggregators whose sink is not accepting writes (gateways buffer meanwhile).", "short",
               f'count(tributary_sink_up{{{AGG}}} == 0) or vector(0)', [(1, "red")]), 4, 4)
    l.add(stat("Refused senders", "Gateway ids refused for their credentials (401/403) within stale_after_seconds.", "short",
               f'sum(tributary_refused_senders{{{AGG}}})', [(1, "red")]), 4, 4)
    l.add(stat("Readings accepted /s", "Readings written to the sinks (duplicates not counted).", "short",
               f'sum(rate(tributary_readings_accepted_total{{{AGG}}}[$__rate_interval]))'), 4, 4)
    l.add(stat("Gateways with own series", "Gateways that have tributary_gateway_* series (metrics.per_gateway); the "
               "rest are counted only in the fleet histograms and totals.", "percentunit",
               f'sum(tributary_gateway_series{{{AGG},gateways="shown"}}) / clamp_min(sum(tributary_gateway_series{{{AGG},gateways="all"}}), 1)'), 4, 4)

    l.row("Ingest and sync")
    l.add(timeseries("Ingest and sync rate", "Ingest: readings per second the gateways with series buffer (their last "
                     "minute). Sync: readings per second written to each aggregator's sink.", "short",
                     (f'sum by (instance) (max by (instance, gateway) (tributary_gateway_ingest_rate{{{AGG}}}))', "ingest {{instance}}"),
                     (f'sum by (instance) (rate(tributary_readings_accepted_total{{{AGG}}}[$__rate_interval]))', "sync {{instance}}")), 12, 8)
    l.add(timeseries("Requests by outcome", "Batch and heartbeat requests per second: busy = 429, unavailable = 503, "
                     "rejected = refused for good (set aside), unauthorized = 401/403.", "reqps",
                     (f'sum by (outcome) (rate(tributary_requests_total{{{AGG}}}[$__rate_interval]))', "{{outcome}}"),
                     stack=True), 12, 8)

    l.row("Lag, backlog, silence (every gateway)")
    l.add(heatmap("Lag distribution", "Gateways by the age of the oldest reading each holds unacknowledged "
                  "(tributary_fleet_lag_seconds, every gateway heard from directly).", "s",
                  f'sum by (le) (tributary_fleet_lag_seconds_bucket{{{AGG}}})'), 12, 8)
    l.add(timeseries("Lag quantiles over gateways", "Half, 90% and 99% of the gateways are at most this far behind "
                     "(interpolated within the histogram's buckets).", "s",
                     *lag_quantiles("tributary_fleet_lag_seconds", AGG)), 12, 8)
    l.add(timeseries("Gateways behind", "Gateways whose oldest unacknowledged reading is older than 1 min, 10 min, 1 h.", "short",
                     *[(f'sum(tributary_fleet_lag_seconds_count{{{AGG}}}) - sum(tributary_fleet_lag_seconds_bucket{{{AGG},le=~"{b}|{b}.0"}})', f"> {name}")
                       for b, name in (("60", "1 min"), ("600", "10 min"), ("3600", "1 h"))]), 8, 8)
    l.add(timeseries("Backlog", "Readings the gateways hold unacknowledged: the fleet's total, and the gateways with "
                     "more than 10,000.", "short",
                     (f'sum(tributary_fleet_backlog_readings_sum{{{AGG}}})', "readings held"),
                     (f'sum(tributary_fleet_backlog_readings_count{{{AGG}}}) - sum(tributary_fleet_backlog_readings_bucket{{{AGG},le=~"10000|10000.0"}})', "gateways > 10,000")), 8, 8)
    l.add(timeseries("Silence", "Gateways not heard from (no batch or heartbeat) for more than 1, 5 and 60 min.", "short",
                     *[(f'sum(tributary_fleet_silence_seconds_count{{{AGG}}}) - sum(tributary_fleet_silence_seconds_bucket{{{AGG},le=~"{b}|{b}.0"}})', f"> {name}")
                       for b, name in (("60", "1 min"), ("300", "5 min"), ("3600", "1 h"))]), 8, 8)
    l.add(timeseries("Stale gateways", "Gateways silent longer than stale_after_seconds, by aggregator (a gateway that "
                     "moved to another aggregator is stale at the one it left).", "short",
                     (f'sum by (instance) (tributary_gateways{{{AGG},state="stale"}})', "{{instance}}")), 8, 8)
    l.add(table("Most behind", "The 20 gateways with series most behind (seconds).", "s",
                f'topk(20, max by (gateway) (tributary_gateway_lag_seconds{{{AGG}}}) > 0)', "lag"), 8, 8)
    l.add(table("Stale now", "Gateways with series that every aggregator knowing them calls stale.", "short",
                f'min by (gateway) (tributary_gateway_stale{{{AGG}}}) == 1', "stale"), 8, 8)

    l.row("Losses and refusals")
    l.add(timeseries("Dropped, quarantined, set aside", "Increase per interval of the fleet totals: readings dropped "
                     "(drop_oldest at the buffer quota: lost), payloads quarantined, batches set aside (kept on the gateway).",
                     "short",
                     (f'sum(increase(tributary_fleet_readings_dropped_total{{{AGG}}}[$__rate_interval]))', "dropped readings"),
                     (f'sum(increase(tributary_fleet_payloads_quarantined_total{{{AGG}}}[$__rate_interval]))', "quarantined payloads"),
                     (f'sum(increase(tributary_fleet_batches_set_aside_total{{{AGG}}}[$__rate_interval]))', "set-aside batches")), 12, 8)
    l.add(timeseries("429s and 503s", "Busy (429: admission full, or an address past its share) and unavailable "
                     "(503: sink down, registry full) answers per second, by aggregator.", "reqps",
                     (f'sum by (instance) (rate(tributary_requests_total{{{AGG},outcome="busy"}}[$__rate_interval]))', "429 {{instance}}"),
                     (f'sum by (instance) (rate(tributary_requests_total{{{AGG},outcome="unavailable"}}[$__rate_interval]))', "503 {{instance}}"),
                     (f'sum by (instance) (rate(tributary_address_busy_refusals_total{{{AGG}}}[$__rate_interval]))', "429 per address {{instance}}"),
                     (f'sum by (instance) (rate(tributary_new_gateways_refused_total{{{AGG}}}[$__rate_interval]))', "503 registry full {{instance}}")), 12, 8)
    l.add(timeseries("Connections refused and cut off", "Connections closed at once (max_connections, per address) and "
                     "requests whose head or body arrived too slowly.", "short",
                     (f'sum by (instance) (increase(tributary_connections_refused_total{{{AGG}}}[$__rate_interval]))', "refused {{instance}}"),
                     (f'sum by (instance, part) (increase(tributary_requests_cut_off_total{{{AGG}}}[$__rate_interval]))', "cut off ({{part}}) {{instance}}")), 12, 8)
    l.add(timeseries("Refused senders and unwritten audit", "Gateway ids refused for their credentials; audit events not "
                     "written because the audit directory is full (alert on any).", "short",
                     (f'sum by (instance) (tributary_refused_senders{{{AGG}}})', "refused senders {{instance}}"),
                     (f'sum by (instance) (increase(tributary_audit_unwritten_total{{{AGG}}}[$__rate_interval]))', "audit unwritten {{instance}}")), 12, 8)

    l.row("Sink")
    l.add(timeseries("Sink write latency", "Time for the sink to commit a batch, including the wait for a coalesced write.", "s",
                     *[(f'histogram_quantile({q}, sum by (le, instance) (rate(tributary_sink_write_seconds_bucket{{{AGG}}}[$__rate_interval])))', f"p{round(q * 100)} {{{{instance}}}}")
                       for q in (0.5, 0.99)],
                     (f'sum by (instance) (rate(tributary_sink_write_seconds_sum{{{AGG}}}[$__rate_interval])) / sum by (instance) (rate(tributary_sink_write_seconds_count{{{AGG}}}[$__rate_interval]))', "mean {{instance}}")), 12, 8)
    l.add(timeseries("Sink writes and failures", "Commits per second (fewer than batches when coalesced) and failed writes "
                     "(answered 503).", "ops",
                     (f'sum by (instance) (rate(tributary_sink_writes_total{{{AGG}}}[$__rate_interval]))', "writes {{instance}}"),
                     (f'sum by (instance) (rate(tributary_sink_failures_total{{{AGG}}}[$__rate_interval]))', "failures {{instance}}")), 8, 8)
    l.add(timeseries("Sink up", "1 when the sink's last write succeeded and it answers now.", "short",
                     (f'tributary_sink_up{{{AGG}}}', "{{instance}}")), 4, 8)

    l.row("Admission")
    l.add(timeseries("Batches in flight", "Batches admitted toward the sink and not yet answered, against the bound "
                     "(limits.max_in_flight_batches); at the bound new batches are answered 429.", "short",
                     (f'tributary_in_flight_batches{{{AGG}}}', "in flight {{instance}}"),
                     (f'tributary_max_in_flight_batches{{{AGG}}}', "bound {{instance}}")), 8, 8)
    l.add(timeseries("Bytes in flight", "Request bytes admitted toward the sink and not yet answered.", "bytes",
                     (f'tributary_in_flight_bytes{{{AGG}}}', "{{instance}}")), 8, 8)
    l.add(timeseries("Connections open", "HTTP connections open now.", "short",
                     (f'tributary_connections_open{{{AGG}}}', "{{instance}}")), 8, 8)

    l.row("Relays")
    l.add(timeseries("Relay spool", "Batches and readings a relay holds and has not yet forwarded upstream.", "short",
                     (f'tributary_relay_spool_batches{{{AGG}}}', "batches {{instance}}"),
                     (f'tributary_relay_spool_readings{{{AGG}}}', "readings {{instance}}"),
                     (f'tributary_relay_spool_set_aside_batches{{{AGG}}}', "set aside {{instance}}")), 8, 8)
    l.add(timeseries("Relay spool bytes", "Bytes of the spooled batches (upstream.max_spool_bytes bounds it).", "bytes",
                     (f'tributary_relay_spool_bytes{{{AGG}}}', "{{instance}}")), 8, 8)
    l.add(timeseries("Relay spool age", "Age of the oldest batch not yet forwarded, against upstream.max_age_seconds "
                     "(the TributaryRelayLagging alert).", "s",
                     (f'tributary_relay_spool_oldest_age_seconds{{{AGG}}}', "oldest {{instance}}"),
                     (f'tributary_relay_spool_max_age_seconds{{{AGG}}}', "max age {{instance}}")), 8, 8)
    l.add(timeseries("Forwarded upstream", "Readings per second the upstream acknowledged, and whether it answered the "
                     "relay's last request.", "short",
                     (f'sum by (instance) (rate(tributary_relay_forwarded_readings_total{{{AGG}}}[$__rate_interval]))', "readings/s {{instance}}"),
                     (f'tributary_relay_upstream_up{{{AGG}}}', "upstream up {{instance}}")), 12, 8)
    l.add(timeseries("Upstream requests by outcome", "The relays' requests to their upstream per second.", "reqps",
                     (f'sum by (outcome) (rate(tributary_relay_upstream_requests_total{{{AGG}}}[$__rate_interval]))', "{{outcome}}"),
                     stack=True), 12, 8)

    variables = [datasource_variable(),
                 query_variable("instance", "Aggregator", "label_values(tributary_sink_up, instance)", True, ".+")]
    links = [{"asDropdown": False, "icon": "dashboard", "includeVars": False, "keepTime": True, "tags": [],
              "targetBlank": False, "title": "Tributary gateway", "type": "link", "url": "/d/tributary-gateway"}]
    return dashboard("tributary-fleet", "Tributary fleet",
                     "The whole fleet from the aggregators' /metrics: ingest and sync, lag, backlog and silence over every "
                     "gateway, losses, 429s and 503s, the sinks, admission and the relays' spools.", l, variables, links)


def gateway():
    g = 'gateway="$gateway"'
    l = Layout()
    l.row("Now")
    l.add(stat("Stale", "1 when every aggregator that knows the gateway has not heard from it for stale_after_seconds.", "short",
               f'min(tributary_gateway_stale{{{g}}})', [(1, "red")],
               [{"options": {"0": {"text": "reporting"}, "1": {"text": "stale"}}, "type": "value"}]), 4, 4)
    l.add(stat("Last heard", "Time since the gateway was last heard from (batch or heartbeat).", "s",
               f'time() - max(tributary_gateway_last_seen_timestamp_seconds{{{g}}})', [(300, "orange")]), 4, 4)
    l.add(stat("Lag", "Age of the oldest reading the gateway holds unacknowledged; 0 when caught up.", "s",
               f'max(tributary_gateway_lag_seconds{{{g}}})', [(600, "orange")]), 4, 4)
    l.add(stat("Backlog", "Readings the gateway holds unacknowledged.", "short",
               f'max(tributary_gateway_backlog_readings{{{g}}})'), 4, 4)
    l.add(stat("Buffer file", "Pages in use in the gateway's buffer file (backlog, quarantine, retained).", "bytes",
               f'max(tributary_gateway_buffer_bytes{{{g}}})'), 4, 4)
    l.add(stat("Clock skew", "The gateway's clock minus the aggregator's (NTP-style estimate).", "s",
               f'max(tributary_gateway_clock_skew_seconds{{{g}}})'), 4, 4)

    l.row("Delivery (from the aggregators)")
    l.add(timeseries("Ingest and sync", "Ingest: readings per second the gateway buffers (its last minute). Sync: readings "
                     "per second from it written to the sink.", "short",
                     (f'max(tributary_gateway_ingest_rate{{{g}}})', "ingest"),
                     (f'max(rate(tributary_gateway_readings_synced_total{{{g}}}[$__rate_interval]))', "sync")), 12, 8)
    l.add(timeseries("Lag", "Age of the oldest reading the gateway holds unacknowledged.", "s",
                     (f'max(tributary_gateway_lag_seconds{{{g}}})', "lag")), 12, 8)
    l.add(timeseries("Backlog", "Readings the gateway holds unacknowledged.", "short",
                     (f'max(tributary_gateway_backlog_readings{{{g}}})', "backlog readings")), 8, 8)
    l.add(timeseries("Buffer file", "Pages in use in the gateway's buffer file.", "bytes",
                     (f'max(tributary_gateway_buffer_bytes{{{g}}})', "buffer")), 8, 8)
    l.add(timeseries("Dropped, quarantined, set aside", "Increase per interval: readings dropped under drop_oldest (lost), "
                     "payloads quarantined, batches set aside.", "short",
                     (f'max(increase(tributary_readings_dropped_total{{{g}}}[$__rate_interval]))', "dropped"),
                     (f'max(increase(tributary_payloads_quarantined_total{{{g}}}[$__rate_interval]))', "quarantined"),
                     (f'max(increase(tributary_batches_set_aside_total{{{g}}}[$__rate_interval]))', "set aside")), 8, 8)
    l.add(timeseries("Where it reports", "Seconds since each aggregator (or relay) last heard from the gateway: after a "
                     "failover the one it left falls behind.", "s",
                     (f'time() - tributary_gateway_last_seen_timestamp_seconds{{{g}}}', "{{instance}}")), 12, 8)
    l.add(timeseries("Clock skew", "The gateway's clock minus each aggregator's.", "s",
                     (f'tributary_gateway_clock_skew_seconds{{{g}}}', "{{instance}}"), min_zero=False), 12, 8)

    l.row("Agent (its own /metrics, forwarded with a gateway label)")
    l.add(timeseries("Requests by outcome", "The agent's requests to the aggregator per second: busy = 429, unavailable = "
                     "503, unreachable = no answer.", "reqps",
                     (f'sum by (outcome) (rate(tributary_agent_requests_total{{{g}}}[$__rate_interval]))', "{{outcome}}"),
                     stack=True), 12, 8)
    l.add(timeseries("Request latency", "Send to answer.", "s",
                     *[(f'histogram_quantile({q}, sum by (le) (rate(tributary_agent_request_seconds_bucket{{{g}}}[$__rate_interval])))', f"p{round(q * 100)}")
                       for q in (0.5, 0.99)]), 12, 8)
    l.add(timeseries("Readings in and out", "Readings committed to the buffer and acknowledged by the aggregator, per second.", "short",
                     (f'rate(tributary_agent_readings_ingested_total{{{g}}}[$__rate_interval])', "ingested"),
                     (f'rate(tributary_agent_readings_acknowledged_total{{{g}}}[$__rate_interval])', "acknowledged"),
                     (f'rate(tributary_agent_readings_withheld_total{{{g}}}[$__rate_interval])', "withheld by governance")), 8, 8)
    l.add(timeseries("Agent backlog", "Readings buffered and not yet acknowledged, batches sealed and waiting, and batches set aside.", "short",
                     (f'tributary_agent_backlog_readings{{{g}}}', "backlog readings"),
                     (f'tributary_agent_sealed_batches{{{g}}}', "sealed batches"),
                     (f'tributary_agent_batches_set_aside{{{g}}}', "set-aside batches")), 8, 8)
    l.add(timeseries("Broker and buffer", "1 while connected to the MQTT broker; 1 while the buffer is at its quota or the disk is full.", "short",
                     (f'tributary_agent_broker_connected{{{g}}}', "broker connected"),
                     (f'tributary_agent_buffer_full{{{g}}}', "buffer full")), 8, 8)

    variables = [datasource_variable(),
                 query_variable("gateway", "Gateway", "label_values(tributary_gateway_last_seen_timestamp_seconds, gateway)", False)]
    links = [{"asDropdown": False, "icon": "dashboard", "includeVars": False, "keepTime": True, "tags": [],
              "targetBlank": False, "title": "Tributary fleet", "type": "link", "url": "/d/tributary-fleet"}]
    return dashboard("tributary-gateway", "Tributary gateway",
                     "One gateway's figures from the aggregators' per-gateway series (the gateways metrics.per_gateway "
                     "names), and from the agent's own /metrics where a collector forwards them with a gateway label.",
                     l, variables, links)


DASHBOARDS = {"tributary-fleet.json": fleet, "tributary-gateway.json": gateway}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)), help="directory to write the JSON to")
    out = parser.parse_args().out
    os.makedirs(out, exist_ok=True)
    for name, make in DASHBOARDS.items():
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.write(json.dumps(make(), indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
