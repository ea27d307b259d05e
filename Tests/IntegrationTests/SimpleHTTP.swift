// A tiny JSON client over AsyncHTTPClient for tests that talk to a separately started `integrator` process.
import AsyncHTTPClient
import Foundation
import IntegratorCore
import NIOCore

struct SimpleHTTP: Sendable {
    let port: Int

    func call(_ method: String, _ path: String, body: JSONValue? = nil, token: String? = nil) async throws -> JSONValue {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = .RAW(value: method)
        request.headers.add(name: "content-type", value: "application/json")
        if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        if let body { request.body = .bytes(ByteBuffer(string: body.encodedString())) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let buffer = try await response.body.collect(upTo: 1 << 20)
        return (try? JSONValue.parse(buffer.readableBytesView)) ?? .null
    }
}
