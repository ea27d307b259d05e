// The receiver the webhooks and scheduled messages benchmarks deliver to: HTTP/1.1 on 127.0.0.1, straight on NIO.
//
// Why not Hummingbird, like the other fake servers: the receiver stands in for a tenant's server, which runs on
// another machine in production, yet here it shares the two cores with the process measured. Its router, request
// and response types and task per request cost about a tenth of a delivery's CPU; parsing the request and answering
// `200` with no body is all a receiver needs to do.
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A receiver on 127.0.0.1 that notes each event's arrival (by `X-Event-ID`) and answers 200 to every `POST /hook`.
enum BenchReceiver {
    static func run<T: Sendable>(_ body: @Sendable (_ url: String, _ arrivals: EventTimes) async throws -> T) async throws -> T {
        let arrivals = EventTimes()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HookHandler(arrivals: arrivals))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        guard let port = server.localAddress?.port else {
            try? await server.close()
            throw BenchFailure("the benchmark's receiver did not start")
        }
        let result: Result<T, any Error>
        do {
            result = .success(try await body("http://127.0.0.1:\(port)/hook", arrivals))
        } catch {
            result = .failure(error)
        }
        try? await server.close()
        return try result.get()
    }

    private final class HookHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        private let arrivals: EventTimes
        private var status = HTTPResponseStatus.ok
        private var keepAlive = true
        private var eventID: String?

        init(arrivals: EventTimes) { self.arrivals = arrivals }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                eventID = head.headers.first(name: "x-event-id")
                status = head.method == .POST && head.uri == "/hook" ? .ok : .notFound
                keepAlive = head.isKeepAlive
            case .body:
                break
            case .end:
                // Noted once the whole request is in, when a router would hand it to its handler.
                if let eventID { arrivals.record(eventID) }
                let headers = HTTPHeaders([("content-length", "0")])
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
                let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
                if !keepAlive {
                    let channel = context.channel
                    done.whenComplete { _ in channel.close(promise: nil) }
                }
            }
        }
    }
}
