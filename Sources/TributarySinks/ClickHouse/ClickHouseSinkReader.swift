import TributaryClickHouse

extension ClickHouseSink {
    /// Reads what `ClickHouseSink` wrote: for tools such as `tributary-sim verify`, so none
    /// keeps its own SQL for the sink's tables. Reads with `FINAL`, so the copies a retried
    /// insert left behind (not yet merged away) count once, as any query that wants exact
    /// results must read them.
    public struct Reader: Sendable {
        private let client: ClickHouseClient
        private let database: String

        /// `caFile`: the CA for a `clickhouse+https` server's certificate.
        public init(endpoint: ClickHouseEndpoint, caFile: String? = nil, timeout: Duration = .seconds(120)) {
            client = ClickHouseClient(endpoint: endpoint, timeout: timeout, caFile: caFile)
            database = endpoint.database
        }

        /// The stored readings of `gateways`.
        public func readings(ofGateways gateways: [String]) async throws(ClickHouseError) -> [StoredReading] {
            let rows = try await client.select("""
                SELECT \(StoredReading.columns) FROM \(database).readings FINAL
                WHERE gateway_id IN (\(gateways.map(ClickHouseClient.quote).joined(separator: ", ")))
                """, maxResponseBytes: 4 << 30)
            return rows.compactMap { f in
                guard f.count == 8, let timeMs = f[3].flatMap({ Int64($0) }) else { return nil }
                return StoredReading(gatewayID: f[0] ?? "", sensorID: f[1] ?? "", metric: f[2] ?? "", timeMs: timeMs, valueType: f[4],
                                     value: f[5].flatMap { Double($0) }, valueInt: f[6].flatMap { Int64($0) }, valueText: f[7])
            }
        }

        public func shutdown() async { await client.shutdown() }
    }
}
