// The JSON reader: what it accepts, what it refuses, and agreement with Foundation's decoder on random documents.
import Foundation
import IntegratorCore
import Testing

@Suite("JSON parsing")
struct JSONParserTests {
    @Test("values, escapes and surrogate pairs")
    func accepts() throws {
        #expect(try JSONValue.parse(#" {"a": [1, -2.5, 3e2, 0, -0.0, true, false, null], "b": {}} "#)
            == ["a": [1, -2.5, 300, 0, 0, true, false, nil], "b": [:]])
        #expect(try JSONValue.parse(#""tab\there \"q\" \\ \/ \u00e9 \ud83d\ude00 \n""#) == .string("tab\there \"q\" \\ / é 😀 \n"))
        #expect(try JSONValue.parse("\"olá, São Paulo\"") == "olá, São Paulo")
        #expect(try JSONValue.parse(#"{"k": 1, "k": 2}"#) == ["k": 2], "the last duplicate wins")
        #expect(try JSONValue.parse("[]") == [])
        #expect(try JSONValue.parse("12345678901234") == .number(12_345_678_901_234))
    }

    @Test("malformed text is refused", arguments: [
        "", " ", "{", "[1,]", "{\"a\":1,}", "01", "1.", ".5", "-", "1e", "+1", "tru", "nul", "[1 2]", "{\"a\" 1}",
        "{a:1}", "\"unterminated", "\"bad \\x escape\"", "\"\\ud83d alone\"", "\"\\ude00\"", "\"line\nbreak\"", "1 2",
        "[1]x", "NaN", "1e999", "'single'",
    ])
    func refuses(_ text: String) {
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse(text) }
    }

    @Test("nesting is bounded")
    func depth() throws {
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse(deep) }
        let fine = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(try JSONValue.parse(fine) != .null)
    }

    @Test("agrees with Foundation's decoder and round-trips through encodedString on random documents")
    func randomDocuments() throws {
        var generator = SplitMix64(seed: 42)
        for _ in 0..<500 {
            let value = Self.randomValue(depth: 0, using: &generator)
            let text = value.encodedString()
            let parsed = try JSONValue.parse(text)
            #expect(parsed == value, "\(text)")
            let viaFoundation = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
            #expect(viaFoundation == parsed, "\(text)")
        }
    }

    static func randomValue(depth: Int, using generator: inout SplitMix64) -> JSONValue {
        let pick = Int.random(in: 0..<(depth > 3 ? 5 : 7), using: &generator)
        switch pick {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &generator))
        case 2: return .number(Double(Int.random(in: -1_000_000...1_000_000, using: &generator)))
        case 3: return .number(Double.random(in: -1e6...1e6, using: &generator))
        case 4:
            let alphabet = Array("abc XYZ\"\\/\n\t\u{1}éç😀{}[]:,")
            return .string(String((0..<Int.random(in: 0...12, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }))
        case 5:
            return .array((0..<Int.random(in: 0...4, using: &generator)).map { _ in randomValue(depth: depth + 1, using: &generator) })
        default:
            var members: [String: JSONValue] = [:]
            for index in 0..<Int.random(in: 0...4, using: &generator) {
                members["k\(index)\(Bool.random(using: &generator) ? "é" : "")"] = randomValue(depth: depth + 1, using: &generator)
            }
            return .object(members)
        }
    }
}
