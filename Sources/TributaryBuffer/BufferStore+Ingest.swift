import Foundation
import Synchronization
import TributaryCore
import TributaryRuntime
import TributarySQLite
import TributaryWire
import TributaryCrypto

/// Stage 1, ingest: readings and quarantined payloads in, in group commits, with what the
/// committer keeps beside them (the broker session's subscriptions, retained payloads' digests,
/// the redelivery window, the Sparkplug sessions).
extension BufferStore {
    /// The digest of the last payload stored from each of `topics` that has one. Topics are
    /// told apart by their bytes, as the broker and the table do.
    public func lastPayloadDigests(_ topics: some Sequence<ExactString>) throws(SQLiteError) -> [ExactString: Int64] {
        try db.withConnection { c throws(SQLiteError) in
            var found: [ExactString: Int64] = [:]
            for topic in topics {
                if let digest = try c.scalar("SELECT digest FROM topic_payloads WHERE topic = ?", topic.value)?.int64 { found[topic] = digest }
            }
            return found
        }
    }

    /// The filters the broker's persistent session for `clientID` held when they were last
    /// confirmed, or nil when unknown (never recorded, or recorded for another client id).
    public func sessionSubscriptions(clientID: String) throws(SQLiteError) -> Set<String>? {
        let stored = try db.withConnection { c throws(SQLiteError) in
            try c.scalar("SELECT value FROM meta WHERE key = 'mqtt_session'")?.string
        }
        guard let stored, let session = try? JSONDecoder().decode(MQTTSession.self, from: Data(stored.utf8)),
              session.clientID == clientID else { return nil }
        return Set(session.filters)
    }

    public func setSessionSubscriptions(_ filters: Set<String>, clientID: String) throws(SQLiteError) {
        let json = (try? JSONEncoder().encode(MQTTSession(clientID: clientID, filters: filters.sorted()))).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        try db.withConnection { c throws(SQLiteError) in
            try c.run("INSERT INTO meta (key, value) VALUES ('mqtt_session', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", json)
        }
    }

    /// The redelivery window a stopping agent left (see `RedeliveryFilter`), as it gave it;
    /// empty when none.
    public func redeliveryWindow() throws(SQLiteError) -> [UInt8] {
        let stored = try db.withConnection { c throws(SQLiteError) in
            try c.scalar("SELECT value FROM meta WHERE key = 'redelivery_window'")?.string
        }
        savedWindowBytes.withLock { $0 = Int64(stored?.utf8.count ?? 0) }
        return stored.flatMap(BatchChain.bytes(hex:)) ?? []
    }

    public func setRedeliveryWindow(_ window: [UInt8]) throws(SQLiteError) {
        try db.withConnection { c throws(SQLiteError) in
            try c.run("INSERT INTO meta (key, value) VALUES ('redelivery_window', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                      BatchChain.hex(window))
        }
        savedWindowBytes.withLock { $0 = Int64(window.count * 2) }
    }

    private struct MQTTSession: Codable {
        var clientID: String
        var filters: [String]
        enum CodingKeys: String, CodingKey {
            case clientID = "client_id"
            case filters
        }
    }

    /// The Sparkplug sessions last committed with `append`, if any.
    public func sparkplugSessions() throws(SQLiteError) -> String? {
        try db.withConnection { c throws(SQLiteError) in
            try c.scalar("SELECT value FROM meta WHERE key = 'sparkplug_sessions'")?.string
        }
    }

    /// Commits a group of readings and quarantined payloads in one transaction, with the count
    /// of redelivered messages that were recognised and not stored again, and the Sparkplug
    /// sessions when the group's births or deaths changed them (so both survive together).
    /// `payloadDigests` (topic -> digest) are the payloads this group processed, kept per topic
    /// in the same transaction so a retained message can be recognised later.
    public func append(_ readings: [Reading], quarantined: [QuarantinedPayload], redeliveries: Int = 0,
                       sparkplugSessions: String? = nil, payloadDigests: [ExactString: Int64] = [:],
                       monotonicNowMs: Int64 = MonotonicClock.nowMs()) throws(SQLiteError) {
        guard !readings.isEmpty || !quarantined.isEmpty || redeliveries > 0 || sparkplugSessions != nil || !payloadDigests.isEmpty else { return }
        let lastID = try db.withConnection { c throws(SQLiteError) -> Int64 in
            try c.transaction { () throws(SQLiteError) in
                if let sparkplugSessions {
                    try c.run("INSERT OR REPLACE INTO meta (key, value) VALUES ('sparkplug_sessions', ?)", sparkplugSessions)
                }
                try Self.insert(c, readings)
                let lastID = c.lastInsertRowID
                try c.runForEach("INSERT INTO topic_payloads (topic, digest) VALUES (?, ?) ON CONFLICT (topic) DO UPDATE SET digest = excluded.digest",
                                 payloadDigests) { row, entry in
                    row.bind(entry.key.value)
                    row.bind(entry.value)
                }
                for q in quarantined {
                    try c.run("INSERT INTO quarantine (topic, payload, reason, received_ms) VALUES (?, ?, ?, ?)",
                              q.topic, q.payload, q.reason, q.receivedAtMs)
                }
                try Self.bump(c, "ingested_total", by: readings.count)
                try Self.bump(c, "quarantined_total", by: quarantined.count)
                try Self.bump(c, "redeliveries_total", by: redeliveries)
                return lastID
            }
        }
        noteArrival(readings.count, lastID: lastID, monotonicNowMs: monotonicNowMs)
        counters.withLock {
            $0.redeliveriesTotal += Int64(redeliveries)
            $0.unsealedReadings += Int64(readings.count)
            $0.ingestedTotal += Int64(readings.count)
            $0.quarantinedTotal += Int64(quarantined.count)
            $0.quarantineHeld += Int64(quarantined.count)
            if !quarantined.isEmpty { $0.quarantineRevision += 1 }
        }
    }

    /// Appends `readings` to the unsealed ones, inside the caller's transaction.
    static func insert(_ c: SQLiteConnection, _ readings: [Reading]) throws(SQLiteError) {
        try c.runForEach("""
            INSERT INTO readings (gateway_id, sensor_id, metric, topic, time_ms, received_ms,
                value_type, value_real, value_int, value_text, unit, labels)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, readings) { row, r in
            let (type, real, int, text) = Self.columns(r.value)
            row.bind(r.gatewayID)
            row.bind(r.sensorID)
            row.bind(r.metric)
            row.bind(r.topic)
            row.bind(r.timeMs)
            row.bind(r.receivedAtMs)
            row.bind(type)
            row.bind(real)
            row.bind(int)
            row.bind(text)
            row.bind(r.unit)
            row.bind(LabelsJSON.encode(r.labels))
        }
    }

    /// Records when a committed group of `count` readings, the last with row id `lastID`, arrived
    /// (for sealing by age).
    func noteArrival(_ count: Int, lastID: Int64, monotonicNowMs: Int64) {
        if count > 0 {
            arrivals.withLock { arrivals in
                // Row ids start again low once sealing has emptied the table (the id is the
                // highest one plus 1): every entry then is of rows gone. Kept, they made a new
                // reading look as old as them, sealed at once whatever `batch_max_age_ms` said,
                // and were never let go (attack round 12).
                if let last = arrivals.last, lastID <= last.lastID { arrivals.removeAll() }
                arrivals.append((lastID, monotonicNowMs))
            }
        }
    }

    /// The quarantined payloads, newest last (for inspection and tests).
    public func quarantinedPayloads(limit: Int = 100) throws(SQLiteError) -> [QuarantinedPayload] {
        try db.withConnection { c throws(SQLiteError) in
            var result: [QuarantinedPayload] = []
            try c.forEach("SELECT topic, payload, reason, received_ms FROM quarantine ORDER BY id LIMIT ?", [limit]) { row in
                result.append(QuarantinedPayload(topic: row.string(0) ?? "", payload: row[1].bytes ?? [],
                                                 reason: row.string(2) ?? "", receivedAtMs: row.int64(3)))
            }
            return result
        }
    }

    /// A quarantine reason without its particulars: the text before its first colon ("invalid
    /// JSON", "invalid timestamp", "reading S/M"), at most 80 characters. `quarantineKinds`
    /// groups by the same rule in SQL.
    public static func quarantineKind(_ reason: String) -> String {
        String(reason.prefix { $0 != ":" }.prefix(80))
    }

    /// The kinds of reason the quarantine holds payloads for, most frequent first: each with its
    /// count and its latest full reason.
    public func quarantineKinds(limit: Int = 5) throws(SQLiteError) -> [QuarantineKind] {
        try db.withConnection { c throws(SQLiteError) in try Self.quarantineKinds(c, limit: limit) }
    }

    /// The query behind `quarantineKinds`, for the writer and `BufferReader` alike.
    static func quarantineKinds(_ c: SQLiteConnection, limit: Int) throws(SQLiteError) -> [QuarantineKind] {
        var result: [QuarantineKind] = []
        try c.forEach("""
            SELECT kind, n, (SELECT reason FROM quarantine WHERE id = latest) FROM (
                SELECT substr(reason, 1, min(instr(reason || ':', ':') - 1, 80)) AS kind, count(*) AS n, max(id) AS latest
                FROM quarantine GROUP BY kind ORDER BY n DESC, kind LIMIT ?)
            """, [limit]) { row in
            result.append(QuarantineKind(kind: row.string(0) ?? "", count: row.int64(1), example: row.string(2) ?? ""))
        }
        return result
    }
}

/// One kind of quarantine reason (see `BufferStore.quarantineKind`): how many payloads the
/// quarantine holds for it, and the latest full reason.
public struct QuarantineKind: Sendable, Equatable {
    public let kind: String
    public let count: Int64
    public let example: String
}
