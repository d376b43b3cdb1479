import Foundation
import Testing
@testable import TributaryAggregator

@Suite("aggregator configuration")
struct AggregatorConfigTests {
    @Test func theShippedExampleLoads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let config = try AggregatorConfig.load(file: root.appendingPathComponent("deploy/examples/aggregator.yaml").path)
        #expect(config.limits.maxInFlightBatches == 64 && config.limits.maxInFlightBytes == 64 << 20)
        #expect(config.staleAfterSeconds == 120)
        #expect(config.clickHouse.maxInsertBatches == 256 && config.clickHouse.timeout == .seconds(30))
    }
}
