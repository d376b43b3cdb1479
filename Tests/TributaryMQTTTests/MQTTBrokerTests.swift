import Testing
@testable import TributaryMQTT

@Suite("broker URLs")
struct MQTTBrokerTests {
    @Test(arguments: [
        ("mqtt://127.0.0.1:1883", "127.0.0.1", 1883, false),
        ("mqtt://broker", "broker", 1883, false),
        ("broker.local:1884", "broker.local", 1884, false),
        ("mqtts://broker.example.com", "broker.example.com", 8883, true),
        ("mqtts://127.0.0.1:18883/", "127.0.0.1", 18883, true),
        ("mqtts://[::1]", "::1", 8883, true),
        ("mqtt://[::1]:1885", "::1", 1885, false),
    ])
    func parses(_ url: String, _ host: String, _ port: Int32, _ tls: Bool) throws {
        let broker = try MQTTBroker(url: url)
        #expect(broker.host == host && broker.port == port && broker.tls == tls)
        #expect(try MQTTBroker(url: broker.description) == broker, "the description reads back as the same broker")
    }

    @Test func descriptionShowsTheScheme() throws {
        #expect(try MQTTBroker(url: "mqtts://b").description == "mqtts://b:8883")
        #expect(try MQTTBroker(url: "b").description == "mqtt://b:1883")
    }

    @Test func anUnknownSchemeListsTheSupportedOnes() {
        #expect(throws: MQTTBrokerURLError.unsupportedScheme("ssl://b:8883")) { try MQTTBroker(url: "ssl://b:8883") }
        let text = MQTTBrokerURLError.unsupportedScheme("tcp://b").description
        #expect(text.contains("mqtt://") && text.contains("mqtts://"), "\(text)")
    }

    @Test(arguments: ["mqtts://", "mqtts://b:0", "mqtts://b:99999", "mqtt://b:x", "mqtts://[::1", "mqtts://[::1]x", "mqtt://a/b"])
    func rejectsMalformed(_ url: String) {
        #expect(throws: MQTTBrokerURLError.malformed(url)) { try MQTTBroker(url: url) }
    }
}
