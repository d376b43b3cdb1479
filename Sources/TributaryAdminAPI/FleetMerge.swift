/// Several aggregators' views of one fleet, as one: the aggregators share a sink, and a gateway
/// that failed over has reported to more than one of them. Each aggregator keeps its own
/// registry (nothing is exchanged between them on the write path, so none waits for another);
/// `tributaryctl --aggregator A --aggregator B` reads every one and joins them here.
public enum FleetMerge {
    /// One view of the fleet from every answer. A gateway appears once: its latest status (the
    /// aggregator that heard from it last) with the counts each aggregator made of its batches
    /// added up (each batch is written by one aggregator: the shared ledger answers the others
    /// duplicate), and its hash chain joined across them (`ChainView.merged`).
    ///
    /// Each aggregator stamps times on its own clock, and theirs may disagree: every view's
    /// times are moved onto `nowMs` (the reader's clock) by how far its `generatedAtMs` is from
    /// it, so "latest" means most recently heard, not stamped by the clock furthest ahead.
    public static func merge(_ answers: [FleetView], nowMs: Int64) -> FleetView {
        guard var merged = answers.first else { return FleetView(generatedAtMs: nowMs, staleAfterSeconds: 0, sink: "", gateways: []) }
        guard answers.count > 1 else { return merged }
        let views = answers.map { shifted($0, by: nowMs.saturatingMinus($0.generatedAtMs)) }
        merged.generatedAtMs = nowMs
        // Totals and pages are each aggregator's own; the joined view counts its gateways anew.
        merged.summary = nil
        merged.matched = nil
        merged.staleAfterSeconds = views.map(\.staleAfterSeconds).max()!
        var sinks: [String] = []
        for view in views where !sinks.contains(view.sink) { sinks.append(view.sink) }
        merged.sink = sinks.joined(separator: " | ")
        merged.admission = views.dropFirst().reduce(merged.admission) { add($0, $1.admission) }
        merged.sinkWrites = views.dropFirst().reduce(merged.sinkWrites) { total, view in
            var t = total
            t.writes += view.sinkWrites.writes
            t.batches += view.sinkWrites.batches
            t.readings += view.sinkWrites.readings
            t.largestWriteBatches = max(t.largestWriteBatches, view.sinkWrites.largestWriteBatches)
            return t
        }
        // Any aggregator whose registry cannot be written, named.
        let registryErrors = views.compactMap(\.registryWriteError)
        merged.registryWriteError = registryErrors.isEmpty ? nil : registryErrors.joined(separator: "; ")
        merged.refusedSenders = views.flatMap { $0.refusedSenders ?? [] }.sorted { $0.lastAtMs > $1.lastAtMs }
        var byID: [String: [GatewayView]] = [:]
        for view in views {
            for gateway in view.gateways { byID[gateway.gatewayID, default: []].append(gateway) }
        }
        merged.gateways = byID.keys.sorted().map { merge(byID[$0]!) }
        return merged
    }

    /// One gateway as several aggregators saw it (each entry from a different aggregator).
    public static func merge(_ entries: [GatewayView]) -> GatewayView {
        let latestFirst = entries.sorted { $0.lastSeenMs > $1.lastSeenMs }
        var merged = latestFirst[0]
        guard entries.count > 1 else { return merged }
        merged.readingsSynced = entries.reduce(0) { $0.addingClamped($1.readingsSynced) }
        merged.batchesSynced = entries.reduce(0) { $0.addingClamped($1.batchesSynced) }
        merged.duplicateBatches = entries.reduce(0) { $0.addingClamped($1.duplicateBatches) }
        merged.lastBatchMs = entries.map(\.lastBatchMs).max()!
        // The latest epoch's chain, joined over the aggregators that saw that epoch; if one
        // of them cannot say which runs it holds (an older aggregator), the latest alone.
        let chains = latestFirst.compactMap(\.chain)
        if let newest = chains.first {
            merged.chain = ChainView.merged([newest] + chains.dropFirst().filter { $0.epoch == newest.epoch }) ?? newest
        }
        return merged
    }

    /// The view with its aggregator's times moved by `offset` ms onto another clock.
    static func shifted(_ view: FleetView, by offset: Int64) -> FleetView {
        var v = view
        v.generatedAtMs = v.generatedAtMs.saturatingAdd(offset)
        v.gateways = v.gateways.map { shifted($0, by: offset) }
        v.refusedSenders = v.refusedSenders?.map { r in
            var r = r
            r.firstAtMs = r.firstAtMs.saturatingAdd(offset)
            r.lastAtMs = r.lastAtMs.saturatingAdd(offset)
            return r
        }
        return v
    }

    /// One gateway's aggregator times moved by `offset` ms (0 stays "never"); its clock skew is
    /// then against the other clock.
    public static func shifted(_ gateway: GatewayView, by offset: Int64) -> GatewayView {
        guard offset != 0 else { return gateway }
        var g = gateway
        if g.lastSeenMs > 0 { g.lastSeenMs = g.lastSeenMs.saturatingAdd(offset) }
        if g.lastBatchMs > 0 { g.lastBatchMs = g.lastBatchMs.saturatingAdd(offset) }
        g.clockSkewMs = g.clockSkewMs.saturatingMinus(offset)
        if var chain = g.chain {
            if chain.waitingSinceMs > 0 { chain.waitingSinceMs = chain.waitingSinceMs.saturatingAdd(offset) }
            if chain.lastProblemMs > 0 { chain.lastProblemMs = chain.lastProblemMs.saturatingAdd(offset) }
            g.chain = chain
        }
        return g
    }

    static func add(_ a: AdmissionStats, _ b: AdmissionStats) -> AdmissionStats {
        var t = a
        t.inFlightBatches += b.inFlightBatches
        t.inFlightBytes += b.inFlightBytes
        t.maxInFlightBatches += b.maxInFlightBatches
        t.maxInFlightBytes += b.maxInFlightBytes
        t.peakInFlightBatches = max(t.peakInFlightBatches, b.peakInFlightBatches)
        t.peakInFlightBytes = max(t.peakInFlightBytes, b.peakInFlightBytes)
        t.busyRefusals += b.busyRefusals
        t.sinkFailures += b.sinkFailures
        t.consecutiveSinkFailures = max(t.consecutiveSinkFailures, b.consecutiveSinkFailures)
        if t.lastSinkError.isEmpty || b.consecutiveSinkFailures > 0 { t.lastSinkError = b.lastSinkError.isEmpty ? t.lastSinkError : b.lastSinkError }
        t.openConnections += b.openConnections
        t.connectionsRefused += b.connectionsRefused
        t.addressBusyRefusals += b.addressBusyRefusals
        t.headTimeouts += b.headTimeouts
        t.bodyTimeouts += b.bodyTimeouts
        t.newGatewaysRefused += b.newGatewaysRefused
        return t
    }
}
