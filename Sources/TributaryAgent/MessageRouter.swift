import TributaryCore
import TributaryCrypto
import TributarySparkplug

/// What one MQTT message becomes: the first subscription whose filter matches its topic, that
/// subscription's decoder, its rules (drop, mask, hash, classification), and the bounds the
/// aggregator holds readings to; and a message the broker delivers again is recognised, not
/// stored twice. No broker, buffer, clock or log of its own: the committer hands it each
/// message with the `Sessions` it keeps, and does the rest (unit-tested alone in
/// `MessageRouterTests`).
struct MessageRouter: Sendable {
    /// How a subscription's payloads become readings.
    enum Decoding: Sendable {
        /// Each message on its own (json, number).
        case payload(PayloadDecoder)
        /// Sparkplug B: through the edge nodes' sessions the caller keeps.
        case sparkplug
    }

    struct Route: Sendable {
        /// The subscription's topic filter, as configured.
        let topic: String
        let filter: TopicFilter
        let decoding: Decoding
        let policy: SubscriptionPolicy
        /// Kept from before a reload that removed its filter (see `replaced(by:)`).
        var retired = false

        func retiring() -> Route {
            var route = self
            route.retired = true
            return route
        }
    }

    /// What the router remembers between messages, kept by its caller (restored at start,
    /// saved at stop).
    struct Sessions {
        /// The messages of the last minute or so, to recognise the broker's redeliveries.
        var redeliveryFilter: RedeliveryFilter
        /// The Sparkplug edge nodes' sessions (births, sequence numbers).
        var sparkplug: SparkplugHost
        /// What the sessions last noticed (gaps, rebirths to request), for the caller to report;
        /// set by each Sparkplug message.
        var sparkplugOutcome: SparkplugHost.Outcome?
        /// Set while `quarantine replay` routes quarantined payloads: the Sparkplug payloads it
        /// has seen. A Sparkplug payload is in `redeliveryFilter` from its own first arrival,
        /// quarantined or not, so a replay asks this one instead whether the same bytes came
        /// up before (a second quarantined copy), and records them in both.
        var replayedSparkplug: RedeliveryFilter?
    }

    /// What became of one message.
    enum Result: Equatable {
        /// `count` readings appended, `withheld` dropped by the subscription's rules.
        case readings(count: Int, withheld: Int)
        /// Delivered before and stored then: nothing appended.
        case redelivery
        /// Nothing appended; the payload is kept whole for an operator, with this reason.
        case quarantined(reason: String)
    }

    private(set) var routes: [Route]
    let pseudonymizer: Pseudonymizer?
    /// What the aggregator takes of one reading (the defaults: an aggregator configured with a
    /// larger `max_string_bytes` still gets text values of at most the default).
    let readingLimits = ReadingLimits()

    init(subscriptions: [AgentConfig.Subscription], gatewayID: String, hashKey: [UInt8]?) throws {
        routes = try subscriptions.map { s in
            if s.format == .sparkplug { return Route(topic: s.topic, filter: TopicFilter(s.topic), decoding: .sparkplug, policy: s.policy) }
            guard let template = s.template else { throw PayloadDecoderConfigError.missingTemplate(format: s.format) }
            let decoder = try PayloadDecoder(format: s.format, template: template, timeField: s.timeField, timeZone: s.timeZone,
                                             defaultGatewayID: gatewayID)
            return Route(topic: s.topic, filter: TopicFilter(s.topic), decoding: .payload(decoder), policy: s.policy)
        }
        pseudonymizer = hashKey.map(Pseudonymizer.init(key:))
    }

    /// This router after a reload to `new`: the new routes, then this one's for filters the
    /// reload removed, so a message the broker sends for such a filter is still decoded as it
    /// would have been (not quarantined as matching nothing). They stay while the agent runs:
    /// mosquitto goes on delivering what it queued for a filter after its UNSUBACK, so no
    /// moment is safe to drop them (dropped at the reload after the UNSUBACK, 4,057 messages of
    /// such a backlog were quarantined in attack round 16). Only a message on no current filter
    /// can reach them (the new routes come first), and the broker sends such a message only
    /// for a filter it once held: at most one route per filter ever removed.
    func replaced(by new: MessageRouter) -> MessageRouter {
        var router = new
        let kept = Set(new.routes.map(\.topic))
        router.routes += routes.filter { !kept.contains($0.topic) }.map { $0.retiring() }
        return router
    }

    /// Appends the message's readings to `readings` (which holds the group's so far, untouched).
    /// `monotonicMs` is when it arrived, for the redelivery filter's window.
    func route(topic: String, payload: [UInt8], receivedAtMs: Int64, monotonicMs: Int64, into readings: inout [Reading],
               sessions: inout Sessions) -> Result {
        sessions.sparkplugOutcome = nil
        guard let route = routes.first(where: { $0.filter.matches(topic) }) else {
            return .quarantined(reason: "no subscription matches the topic")
        }
        let start = readings.count
        switch route.decoding {
        case .payload(let decoder):
            let decoded: (readings: [Reading], carriesEventTime: Bool)
            do {
                decoded = try decoder.decodeMessage(topic: topic, payload: payload, receivedAtMs: receivedAtMs)
            } catch {
                return .quarantined(reason: error.description)
            }
            readings += decoded.readings
            let result = governed(&readings, from: start, by: route.policy)
            // Only a payload that carries its own event time identifies its readings: the same
            // bytes again are then the same readings.
            if case .readings(let count, _) = result, decoded.carriesEventTime,
               sessions.redeliveryFilter.isRedelivery(topic: topic, payload: payload, nowMs: monotonicMs) {
                readings.removeLast(count)
                return .redelivery
            }
            return result
        case .sparkplug:
            // Every Sparkplug payload carries its seq, so the same bytes again are a redelivery;
            // checked first, or the repeat would read as a sequence gap.
            if var replayed = sessions.replayedSparkplug {
                let again = replayed.isRedelivery(topic: topic, payload: payload, nowMs: monotonicMs)
                sessions.replayedSparkplug = replayed
                if again { return .redelivery }
                _ = sessions.redeliveryFilter.isRedelivery(topic: topic, payload: payload, nowMs: monotonicMs)
            } else if sessions.redeliveryFilter.isRedelivery(topic: topic, payload: payload, nowMs: monotonicMs) {
                return .redelivery
            }
            let outcome = sessions.sparkplug.receive(topic: topic, payload: payload, receivedAtMs: receivedAtMs)
            sessions.sparkplugOutcome = outcome
            if let reason = outcome.quarantineReason { return .quarantined(reason: reason) }
            readings += outcome.readings
            return governed(&readings, from: start, by: route.policy)
        }
    }

    /// The subscription's rules, on this message's readings only, before anything is buffered;
    /// the count returned is what was kept, so a redelivery takes back exactly that.
    private func governed(_ readings: inout [Reading], from start: Int, by policy: SubscriptionPolicy) -> Result {
        let withheld = policy.apply(to: &readings, from: start, pseudonymizer: pseudonymizer)
        // A reading the aggregator would refuse is never buffered: sealed into a batch, it would
        // have the whole batch set aside. Its message is quarantined whole (so a replay after a
        // fix brings all of it back) and the rest of the stream is unharmed.
        for reading in readings[start...] {
            guard let problem = readingLimits.violation(of: reading) else { continue }
            readings.removeSubrange(start...)
            return .quarantined(reason: "reading \(Printable.clean(reading.sensorID, maxLength: 64))/\(Printable.clean(reading.metric, maxLength: 64)): \(problem)")
        }
        return .readings(count: readings.count - start, withheld: withheld)
    }
}
