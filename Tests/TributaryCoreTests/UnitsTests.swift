import Testing
import TributaryCore

@Suite("units")
struct UnitsTests {
    @Test(arguments: [("1024", Int64(1024)), ("64k", 65536), ("512MiB", 536_870_912), ("2GB", 2_000_000_000), ("1_000 kB", 1_000_000), ("1g", 1 << 30)])
    func bytes(_ text: String, _ expected: Int64) {
        #expect(Units.bytes(text) == expected)
    }

    @Test(arguments: ["", "MiB", "12 parsecs", "-5", "99999999999T"])
    func notBytes(_ text: String) {
        #expect(Units.bytes(text) == nil)
    }

    @Test(arguments: [("250ms", Int64(250)), ("2s", 2000), ("1.5s", 1500), ("3", 3000), ("4m", 240_000), ("1h", 3_600_000),
                          ("4m10s", 250_000), ("1h30m", 5_400_000), ("2h03m", 7_380_000), ("1d02h", 93_600_000)])
    func durations(_ text: String, _ expected: Int64) {
        #expect(Units.milliseconds(text) == expected)
    }

    @Test(arguments: ["", "soon", "5 fortnights", "-1s", "1.2.3s", "4m10", "m10s"])
    func notDurations(_ text: String) {
        #expect(Units.milliseconds(text) == nil)
    }
}
