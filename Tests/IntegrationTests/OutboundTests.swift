// Outbound HTTP against a real server on 127.0.0.1: the SSRF guard on the address connected to, retries with
// Retry-After on an injected clock, rate budgets, request signing by the generic credential types, and secrets kept
// out of errors.
import Foundation
import HTTPTypes
import Hummingbird
import IntegratorCore
import NIOCore
import Plugins
import Synchronization
import Testing

@Suite("Outbound HTTP")
struct OutboundTests {
    /// A scripted API: `/echo` describes the request it got, `/scripted` plays queued answers, then 200.
    final class ScriptedAPI: Sendable {
        struct Seen: Sendable {
            var method: String
            var path: String
            var query: String
            var headers: [String: String]
        }

        struct Answer: Sendable {
            var status: Int
            var headers: [String: String] = [:]
            var body: String = "{}"
        }

        private let queue = Mutex<[Answer]>([])
        private let seen = Mutex<[Seen]>([])

        func enqueue(_ answers: Answer...) { queue.withLock { $0.append(contentsOf: answers) } }
        var requests: [Seen] { seen.withLock { $0 } }

        func run<T: Sendable>(_ body: @Sendable (_ port: Int) async throws -> T) async throws -> T {
            let router = Router()
            for method in [HTTPRequest.Method.get, .post] {
                router.on("echo", method: method) { request, _ in
                    let seen = self.record(request)
                    let body: JSONValue = [
                        "method": .string(seen.method), "query": .string(seen.query),
                        "headers": .object(seen.headers.mapValues(JSONValue.string)),
                    ]
                    return Self.response(Answer(status: 200, body: body.encodedString()))
                }
                router.on("scripted", method: method) { request, _ in
                    _ = self.record(request)
                    let next = self.queue.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                    return Self.response(next ?? Answer(status: 200, body: #"{"done": true}"#))
                }
            }
            router.get("big") { _, _ in Self.response(Answer(status: 200, body: String(repeating: "x", count: 4096))) }
            router.get("slow") { _, _ in
                try await Task.sleep(for: .seconds(1))
                return Self.response(Answer(status: 200))
            }
            router.get("redirect") { request, _ in
                _ = self.record(request)
                return Self.response(Answer(status: 302, headers: ["Location": "http://169.254.169.254/latest/meta-data"]))
            }
            return try await LocalHTTPServer.run(router, body)
        }

        private func record(_ request: Request) -> Seen {
            // HTTP/1 `Host` arrives as the request's authority.
            var headers: [String: String] = ["host": request.head.authority ?? ""]
            for field in request.headers { headers[field.name.canonicalName] = field.value }
            let entry = Seen(
                method: request.method.rawValue, path: request.uri.path, query: request.uri.query ?? "", headers: headers)
            seen.withLock { $0.append(entry) }
            return entry
        }

        private static func response(_ answer: Answer) -> Response {
            var fields: HTTPFields = [.contentType: "application/json"]
            for (name, value) in answer.headers { fields[HTTPField.Name(name)!] = value }
            return Response(status: .init(code: answer.status), headers: fields, body: .init(byteBuffer: ByteBuffer(string: answer.body)))
        }
    }

    static let loopback = [IPAddressRange("127.0.0.0/8")!, IPAddressRange("::1")!]

    /// Runs `body` with a fresh scripted API, outbound HTTP allowing `allowed`, and a sleeper that never waits.
    static func withOutbound(
        allowing allowed: [IPAddressRange] = loopback, rateLimit: RateLimit = .default,
        _ body: @Sendable (_ api: ScriptedAPI, _ port: Int, _ outbound: OutboundHTTP, _ sleeper: ManualSleeper) async throws -> Void
    ) async throws {
        let api = ScriptedAPI()
        try await api.run { port in
            let sleeper = ManualSleeper()
            let outbound = OutboundHTTP(
                options: .init(allowedRanges: allowed, sleeper: sleeper, rateLimit: rateLimit), logger: TestDatabase.logger)
            do {
                try await body(api, port, outbound, sleeper)
                await outbound.shutdown()
            } catch {
                await outbound.shutdown()
                throw error
            }
        }
    }

    static func refusal(_ client: OutboundClient, _ url: String) async -> OutboundError? {
        do {
            _ = try await client.send(.get(url))
            return nil
        } catch let error as OutboundError {
            return error
        } catch {
            return nil
        }
    }

    // MARK: SSRF guard

    @Test("private, loopback, link-local and metadata targets are refused before any connection")
    func refusesGuardedAddresses() async throws {
        try await Self.withOutbound(allowing: []) { api, port, outbound, _ in
            let client = outbound.client(logger: TestDatabase.logger)
            let targets = [
                ("http://127.0.0.1:\(port)/echo", "loopback"),
                ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
                ("http://[::1]:\(port)/echo", "loopback"),
                ("http://localhost:\(port)/echo", "loopback"),
                ("http://[::ffff:127.0.0.1]:\(port)/echo", "loopback"),
                ("http://0.0.0.0:\(port)/echo", "unspecified"),
                ("http://2130706433:\(port)/echo", "loopback"),
                ("http://10.1.2.3/", "private"),
                ("http://100.64.0.1/", "carrier-grade NAT"),
                ("http://[fd00:ec2::254]/", "cloud metadata"),
            ]
            for (url, reason) in targets {
                let error = await Self.refusal(client, url)
                #expect(error?.code == .refusedAddress, "\(url)")
                #expect(error?.description.contains(reason) == true, "\(url): \(error.map { "\($0)" } ?? "no error")")
                #expect(error?.description.contains("INTEGRATOR_OUTBOUND_ALLOW_CIDRS") == true)
            }
            let named = await Self.refusal(client, "http://localhost:\(port)/echo")
            #expect(named?.description.contains("localhost → 127.0.0.1") == true)
            #expect(api.requests.isEmpty)
        }
    }

    @Test("listed ranges are allowed, and requests to a name go to the checked address with the name as Host")
    func allowsListedRanges() async throws {
        try await Self.withOutbound { api, port, outbound, _ in
            let client = outbound.client(logger: TestDatabase.logger)
            let direct = try await client.send(.get("http://127.0.0.1:\(port)/echo"))
            #expect(direct.status == 200)
            let named = try await client.getJSON("http://localhost:\(port)/echo")
            #expect(named["headers"]?["host"] == .string("localhost:\(port)"))
            #expect(api.requests.count == 2)
            // Allowing loopback does not allow the rest.
            #expect(await Self.refusal(client, "http://169.254.169.254/")?.code == .refusedAddress)
            #expect(await Self.refusal(client, "http://192.168.1.1/")?.code == .refusedAddress)
        }
    }

    @Test("the address policy: embedded IPv4, and metadata only when listed on its own")
    func addressPolicy() {
        let none = AddressPolicy()
        #expect(none.refusal(for: IPAddress("8.8.8.8")!) == nil)
        #expect(none.refusal(for: IPAddress("2606:4700::1111")!) == nil)
        #expect(none.refusal(for: IPAddress("::ffff:10.0.0.1")!) == "private address")
        #expect(none.refusal(for: IPAddress("64:ff9b::a9fe:a9fe")!) == "cloud metadata address")
        #expect(none.refusal(for: IPAddress("fe80::1")!) == "link-local address")
        #expect(none.refusal(for: IPAddress("172.31.255.255")!) == "private address")
        #expect(none.refusal(for: IPAddress("172.32.0.1")!) == nil)
        let linkLocal = AddressPolicy(allowing: [IPAddressRange("169.254.0.0/16")!, IPAddressRange("fd00::/8")!])
        #expect(linkLocal.refusal(for: IPAddress("169.254.1.1")!) == nil)
        #expect(linkLocal.refusal(for: IPAddress("169.254.169.254")!) == "cloud metadata address")
        #expect(linkLocal.refusal(for: IPAddress("fd00:ec2::254")!) == "cloud metadata address")
        let metadata = AddressPolicy(allowing: [IPAddressRange("169.254.169.254/32")!])
        #expect(metadata.refusal(for: IPAddress("169.254.169.254")!) == nil)
        #expect(metadata.refusal(for: IPAddress("169.254.1.1")!) == "link-local address")
    }

    @Test("CIDRs parse strictly", arguments: [
        ("10.0.0.0/8", true), ("fd00::/8", true), ("::1", true), ("127.0.0.1", true), ("0.0.0.0/0", true),
        ("10.0.0.1/8", false), ("10.0.0.0/33", false), ("300.0.0.0/8", false), ("10.0.0/8", false), ("fd00::/129", false),
        ("10.0.0.0/", false), ("10.0.0.0/8/8", false), ("localhost", false), ("", false),
    ])
    func cidrParsing(text: String, valid: Bool) {
        #expect((IPAddressRange(text) != nil) == valid)
    }

    @Test("INTEGRATOR_OUTBOUND_ALLOW_CIDRS: a list of CIDRs, or a one-line error naming the bad one")
    func allowSetting() throws {
        let settings = try Settings(values: ["INTEGRATOR_OUTBOUND_ALLOW_CIDRS": " 10.0.0.0/8, fd00::/8 ,127.0.0.1"])
        #expect(settings.outboundAllowedRanges.map(\.description) == ["10.0.0.0/8", "fd00::/8", "127.0.0.1/32"])
        #expect(try Settings(values: [:]).outboundAllowedRanges.isEmpty)
        for bad in ["10.0.0.1/8", "10.0.0.0/8,banana", "10.0.0.0/40"] {
            do {
                _ = try Settings(values: ["INTEGRATOR_OUTBOUND_ALLOW_CIDRS": bad])
                Issue.record("\(bad) was accepted")
            } catch {
                #expect(error.variable == "INTEGRATOR_OUTBOUND_ALLOW_CIDRS")
                #expect(error.description.contains("'\(bad.split(separator: ",").last!)'"))
                #expect(!error.description.contains("\n"))
            }
        }
    }

    // MARK: Retries

    @Test("Retry-After as an HTTP-date is honoured on the injected clock")
    func retryAfterDate() async throws {
        try await Self.withOutbound { api, port, outbound, sleeper in
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "GMT")
            formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
            let date = formatter.string(from: sleeper.now().addingTimeInterval(30))
            api.enqueue(.init(status: 503, headers: ["Retry-After": date]))
            let response = try await outbound.client(logger: TestDatabase.logger).send(.get("http://127.0.0.1:\(port)/scripted"))
            #expect(response.status == 200)
            #expect(sleeper.waits == [30])
            #expect(api.requests.count == 2)
        }
    }

    @Test("without Retry-After, 5xx and connection errors back off exponentially; the last answer is returned")
    func backoff() async throws {
        try await Self.withOutbound { api, port, outbound, sleeper in
            api.enqueue(.init(status: 500), .init(status: 502), .init(status: 503), .init(status: 504))
            let response = try await outbound.client(logger: TestDatabase.logger).send(.get("http://127.0.0.1:\(port)/scripted"))
            #expect(response.status == 504)
            #expect(api.requests.count == 4)
            let waits = sleeper.waits
            #expect(waits.count == 3)
            for (index, wait) in waits.enumerated() { #expect(wait <= 0.5 * pow(2, Double(index))) }

            // Nothing listens on port 9 of 127.0.0.1: connection refused, retried, then a connection error.
            let error = await Self.refusal(outbound.client(logger: TestDatabase.logger), "http://127.0.0.1:9/")
            #expect(error?.code == .connection)
            #expect(error?.description == "GET http://127.0.0.1:9: could not connect (Connection refused)")
            #expect(sleeper.waits.count == 6)
        }
    }

    @Test("POSTs are retried after a 429 or a failed connect, but not after a 5xx")
    func nonIdempotent() async throws {
        try await Self.withOutbound { api, port, outbound, sleeper in
            let client = outbound.client(logger: TestDatabase.logger)
            api.enqueue(.init(status: 503))
            let failed = try await client.send(OutboundRequest(method: "POST", "http://127.0.0.1:\(port)/scripted", body: Data("{}".utf8)))
            #expect(failed.status == 503)
            #expect(api.requests.count == 1)
            api.enqueue(.init(status: 429, headers: ["Retry-After": "2"]))
            let retried = try await client.send(OutboundRequest(method: "POST", "http://127.0.0.1:\(port)/scripted", body: Data("{}".utf8)))
            #expect(retried.status == 200)
            #expect(sleeper.waits == [2])
            // Nothing listens on port 9: the POST never left, so sending it again is safe.
            do {
                _ = try await client.send(OutboundRequest(method: "POST", "http://127.0.0.1:9/", body: Data("{}".utf8)))
                Issue.record("a POST to a closed port succeeded")
            } catch let error as OutboundError {
                #expect(error.code == .connection)
                #expect(!error.requestWasSent)
            }
            #expect(sleeper.waits.count == 4)
        }
    }

    @Test("a Retry-After longer than the client allows returns the 429 instead of waiting")
    func retryAfterTooLong() async throws {
        try await Self.withOutbound { api, port, outbound, sleeper in
            api.enqueue(.init(status: 429, headers: ["Retry-After": "3600"]))
            let response = try await outbound.client(logger: TestDatabase.logger).send(.get("http://127.0.0.1:\(port)/scripted"))
            #expect(response.status == 429)
            #expect(sleeper.waits.isEmpty)
        }
    }

    // MARK: Rate budget

    @Test("the rate budget is per credentials id and shared by every client of those credentials")
    func rateBudget() async throws {
        try await Self.withOutbound(rateLimit: RateLimit(requestsPerSecond: 2, burst: 2)) { _, port, outbound, sleeper in
            let first = outbound.client(for: nil, credentialsID: "cred-a", type: nil, logger: TestDatabase.logger)
            let second = outbound.client(for: nil, credentialsID: "cred-a", type: nil, logger: TestDatabase.logger)
            let other = outbound.client(for: nil, credentialsID: "cred-b", type: nil, logger: TestDatabase.logger)
            for client in [first, second, first, second, first, second] {
                _ = try await client.send(.get("http://127.0.0.1:\(port)/echo"))
            }
            #expect(sleeper.waits == [0.5, 0.5, 0.5, 0.5])
            _ = try await other.send(.get("http://127.0.0.1:\(port)/echo"))
            #expect(sleeper.waits.count == 4)
            var unlimited = first
            unlimited.rateLimit = nil
            _ = try await unlimited.send(.get("http://127.0.0.1:\(port)/echo"))
            #expect(sleeper.waits.count == 4)
        }
    }

    @Test("a 429 holds back the other clients of the same credentials until Retry-After has passed")
    func rateBudgetPause() async throws {
        try await Self.withOutbound { api, port, outbound, sleeper in
            var first = outbound.client(for: nil, credentialsID: "cred-a", type: nil, logger: TestDatabase.logger)
            first.retry = .never
            let second = outbound.client(for: nil, credentialsID: "cred-a", type: nil, logger: TestDatabase.logger)
            let other = outbound.client(for: nil, credentialsID: "cred-b", type: nil, logger: TestDatabase.logger)
            api.enqueue(.init(status: 429, headers: ["Retry-After": "10"]))
            // The 429 is returned (no retry allowed), but the credentials' budget remembers the pause.
            #expect(try await first.send(.get("http://127.0.0.1:\(port)/scripted")).status == 429)
            #expect(sleeper.waits.isEmpty)
            _ = try await other.send(.get("http://127.0.0.1:\(port)/echo"))
            #expect(sleeper.waits.isEmpty)
            _ = try await second.send(.get("http://127.0.0.1:\(port)/echo"))
            #expect(sleeper.waits == [10])
            _ = try await second.send(.get("http://127.0.0.1:\(port)/echo"))
            #expect(sleeper.waits == [10])
        }
    }

    // MARK: Credentials

    @Test("generic credential types sign requests to their base URL's origin only")
    func genericSigning() async throws {
        try await Self.withOutbound { api, port, outbound, _ in
            let base = "http://127.0.0.1:\(port)"
            let cases: [(any CredentialsType, CredentialValues, String, String)] = [
                (HTTPBearerCredentials(), .init(typeID: "http-bearer", publicValues: [:], secretValues: ["token": Secret("tok")]),
                 "authorization", "Bearer tok"),
                (HTTPBasicCredentials(), .init(typeID: "http-basic", publicValues: ["username": "ana"], secretValues: ["password": Secret("pw")]),
                 "authorization", "Basic " + Data("ana:pw".utf8).base64EncodedString()),
                (HTTPHeaderCredentials(), .init(typeID: "http-header", publicValues: ["header_name": "X-Api-Key"], secretValues: ["value": Secret("k1")]),
                 "x-api-key", "k1"),
            ]
            for (type, credentials, header, value) in cases {
                var client = outbound.client(for: credentials, credentialsID: nil, type: type, logger: TestDatabase.logger)
                client.baseURL = base
                let echoed = try await client.getJSON("/echo")
                #expect(echoed["headers"]?[header] == .string(value), "\(type.id)")
                // Another origin (same server, by name) gets no credentials.
                let elsewhere = try await client.getJSON("http://localhost:\(port)/echo")
                #expect(elsewhere["headers"]?[header] == nil, "\(type.id)")
            }
            let query = CredentialValues(typeID: "http-query", publicValues: ["param_name": "api_key"], secretValues: ["value": Secret("q s&1")])
            var client = outbound.client(for: query, credentialsID: nil, type: HTTPQueryCredentials(), logger: TestDatabase.logger)
            client.baseURL = base + "/"
            let echoed = try await client.getJSON("echo", query: [URLQueryItem(name: "page", value: "2")])
            #expect(echoed["query"] == "page=2&api_key=q%20s%261")
            #expect(api.requests.count == 7)
        }
    }

    @Test("errors name method and URL but never query strings or credentials")
    func errorsHoldNoSecrets() async throws {
        try await Self.withOutbound(allowing: [IPAddressRange("127.0.0.0/8")!]) { api, port, outbound, _ in
            let query = CredentialValues(typeID: "http-query", publicValues: ["param_name": "api_key"], secretValues: ["value": Secret("SECRET-Q")])
            var client = outbound.client(for: query, credentialsID: "c", type: HTTPQueryCredentials(), logger: TestDatabase.logger)
            client.baseURL = "http://127.0.0.1:\(port)"
            api.enqueue(.init(status: 404, body: #"{"message": "nope"}"#))
            do {
                _ = try await client.get("/scripted", query: [URLQueryItem(name: "token", value: "SECRET-T")])
                Issue.record("a 404 passed")
            } catch let error as OutboundError {
                #expect(error.code == .status)
                #expect(error.status == 404)
                #expect(error.description == "GET http://127.0.0.1:\(port): status 404")
            }
            // Webhook URLs carry tokens in their paths: errors show scheme, host and port only.
            api.enqueue(.init(status: 404, body: "{}"))
            do {
                _ = try await client.get("http://127.0.0.1:\(port)/hooks/SECRET-PATH-TOKEN/deliver")
                Issue.record("a 404 passed")
            } catch let error as OutboundError {
                #expect(error.description == "GET http://127.0.0.1:\(port): status 404")
            }
            let badTarget = await Self.refusal(client, "http://user:pw@[::1/SECRET-PATH")
            #expect(badTarget?.description.contains("SECRET") == false)
            #expect(api.requests.last?.query.contains("SECRET-Q") == true)
            let refused = await Self.refusal(client, "http://10.0.0.1/x?api_key=SECRET-U")
            #expect(refused?.description.contains("SECRET") == false)
            let userInfo = await Self.refusal(client, "http://user:SECRET-P@127.0.0.1:\(port)/echo")
            #expect(userInfo?.code == .invalidURL)
            #expect(userInfo?.description.contains("SECRET") == false)
        }
    }

    // MARK: Responses and limits

    @Test("redirects are returned, not followed")
    func redirects() async throws {
        try await Self.withOutbound { api, port, outbound, _ in
            let response = try await outbound.client(logger: TestDatabase.logger).send(.get("http://127.0.0.1:\(port)/redirect"))
            #expect(response.status == 302)
            #expect(response.header("location") == "http://169.254.169.254/latest/meta-data")
            #expect(api.requests.count == 1)
        }
    }

    @Test("bodies over the size limit, slow answers and a shut-down client fail with their own codes")
    func limits() async throws {
        try await Self.withOutbound { _, port, outbound, _ in
            var client = outbound.client(logger: TestDatabase.logger)
            client.maxResponseSize = 1024
            #expect(await Self.refusal(client, "http://127.0.0.1:\(port)/big")?.code == .tooLarge)
            client.timeout = 0.2
            client.retry = .never
            #expect(await Self.refusal(client, "http://127.0.0.1:\(port)/slow")?.code == .timeout)
            #expect(await Self.refusal(.unavailable, "http://127.0.0.1:\(port)/echo")?.code == .unavailable)
            #expect(await Self.refusal(client, "ftp://127.0.0.1/")?.code == .invalidURL)
            #expect(await Self.refusal(client, "/relative")?.code == .invalidURL)
            await outbound.shutdown()
            #expect(await Self.refusal(client, "http://127.0.0.1:\(port)/echo")?.code == .unavailable)
        }
    }

    @Test("JSON helpers decode bodies and name the path that did not fit")
    func decoding() async throws {
        struct Echo: Decodable {
            var method: String
            var query: String
        }
        struct Wrong: Decodable {
            var method: Int
        }
        try await Self.withOutbound { _, port, outbound, _ in
            var client = outbound.client(logger: TestDatabase.logger)
            client.baseURL = "http://127.0.0.1:\(port)/"
            let echo = try await client.getJSON(Echo.self, "/echo", query: [URLQueryItem(name: "a", value: "1")])
            #expect(echo.method == "GET")
            #expect(echo.query == "a=1")
            do {
                _ = try await client.getJSON(Wrong.self, "/echo")
                Issue.record("decoded a string as an Int")
            } catch let error as OutboundError {
                #expect(error.code == .decoding)
                #expect(error.description.contains("method is not a Int"))
            }
        }
    }
}
