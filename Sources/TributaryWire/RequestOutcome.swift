/// What became of one request to `POST /v1/batches`, in the words every part uses: the
/// aggregator's `tributary_requests_total{outcome}` and audit log, the agent's
/// `tributary_agent_requests_total{outcome}`, the fleet simulator's report, and the logs. One
/// word means one thing on both ends of the wire, and each HTTP answer has exactly one word.
///
/// Two narrower types stay next to their code: `SyncClient.Outcome` is what the sender must do
/// next (resend, set aside, reseal), and the sinks' `SinkWriteResult` is what the ledger said
/// (accepted, duplicate, conflict); both map onto these words.
public enum RequestOutcome: String, CaseIterable, Sendable {
    /// 200: the batch is written now.
    case accepted
    /// 200: the batch was written before; not written again.
    case duplicate
    /// 200: a request without a batch (the gateway's status), recorded.
    case heartbeat
    /// 429: too much in flight; resent after Retry-After. Backpressure, not a fault.
    case busy
    /// 503 or another 5xx, or a 200 without a usable ack: the aggregator could not take it now
    /// (its sink down, its registry full); resent.
    case unavailable
    /// 401 or 403: credentials missing, wrong, or another gateway's. Kept and resent: a
    /// configuration problem, not the batch's fault.
    case unauthorized
    /// 409: the aggregator holds other readings under this batch's identity (a rolled-back
    /// buffer); the sender reseals it under a new epoch.
    case conflict
    /// 400, 413, 415, 422 and any other 4xx not named here: refused for good; the batch is set
    /// aside.
    case rejected
    /// 408: the body did not arrive in time; resent.
    case timedOut = "timed_out"
    /// No answer at all (connection refused, reset, the sender's timeout). Seen by senders only.
    case unreachable
    /// 404: the URL is not an aggregator's batch endpoint. Seen by senders only.
    case misdirected

    /// The word for an HTTP answer and the ack it carried (nil when there was none, or it did
    /// not decode).
    public init(httpStatus: Int, ack: Tributary_V1_Ack?) {
        switch httpStatus {
        case 200:
            switch ack?.outcome {
            case .accepted?: self = .accepted
            case .duplicate?: self = .duplicate
            case .heartbeat?: self = .heartbeat
            case .rejected?: self = .rejected
            default: self = .unavailable
            }
        case 401, 403: self = .unauthorized
        case 404: self = .misdirected
        case 408: self = .timedOut
        case 409: self = .conflict
        case 429: self = .busy
        case 400..<500: self = .rejected
        default: self = .unavailable
        }
    }

    /// What an aggregator answers (the two left out are what only a sender sees).
    public static let aggregatorAnswers: [RequestOutcome] = allCases.filter { $0 != .unreachable && $0 != .misdirected }
}
