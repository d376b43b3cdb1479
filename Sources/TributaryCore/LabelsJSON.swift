import Foundation

/// Reading labels as a JSON object with sorted keys, as buffers and sinks store them.
public enum LabelsJSON {
    public static func encode(_ labels: [String: String]) -> String? {
        guard !labels.isEmpty, let data = try? JSONEncoder.sorted.encode(labels) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    public static func decode(_ text: String?) -> [String: String] {
        guard let text, let labels = try? JSONDecoder().decode([String: String].self, from: Data(text.utf8)) else { return [:] }
        return labels
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}
