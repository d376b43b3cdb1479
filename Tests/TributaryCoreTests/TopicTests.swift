import Testing
import TributaryCore

@Suite("topics")
struct TopicTests {
    @Test func templateCapturesAndLiterals() throws {
        let t = try TopicTemplate("site/{gateway}/{sensor}/{metric}")
        #expect(t.match("site/gw1/s1/temp") == [.gateway: "gw1", .sensor: "s1", .metric: "temp"])
        #expect(t.match("other/gw1/s1/temp") == nil)
        #expect(t.match("site/gw1/s1") == nil)
        #expect(t.match("site/gw1//temp") == nil)
        #expect(t.match("site/gw1/s1/temp/") == nil)
        #expect(t.match("site/gw1/s1/temp/extra") == nil)
        #expect(t.match("sitex/gw1/s1/temp") == nil)
        #expect(try TopicTemplate("{sensor}").match("é") == [.sensor: "é"])
        #expect(try TopicTemplate("{sensor}").match("") == nil)
    }

    @Test(arguments: ["site/{bogus}", "site/{sensor}/{sensor}", "site/x{sensor}", "site/+/{sensor}"])
    func badTemplates(_ text: String) {
        #expect(throws: TopicTemplateError.self) { try TopicTemplate(text) }
    }

    @Test(arguments: [
        ("site/+/+/+", "site/a/b/c", true), ("site/+/+/+", "site/a/b", false), ("site/#", "site/a/b/c", true),
        ("site/#", "site", true), ("devices/+/state", "devices/x/state", true), ("devices/+/state", "devices/x/other", false),
        ("#", "$SYS/broker/load", false), ("a/b", "a/b", true), ("a/+", "a/", true), ("a/+", "a", false), ("+", "", true),
        ("+/+", "/", true), ("a//b", "a//b", true), ("a/+/b", "a//b", true), ("a/b", "a/b/", false), ("$SYS/#", "$SYS/x", true),
        ("a/b", "a/bc", false), ("a/bc", "a/b", false), ("é/+", "é/x", true),
    ])
    func filters(_ filter: String, _ topic: String, _ matches: Bool) {
        #expect(TopicFilter(filter).matches(topic) == matches)
    }

    @Test(arguments: [
        ("2024-05-01T12:00:00Z", Int64(1_714_564_800_000)), ("2024-05-01 12:00:00.250+02:00", 1_714_557_600_250),
        ("2024-05-01T12:00:00-0530", 1_714_584_600_000), ("1970-01-01T00:00:00Z", 0),
    ])
    func iso8601(_ text: String, _ ms: Int64) throws {
        #expect(try Timestamp.epochMs(fromISO8601: text) == ms)
    }
}
