// One keep-alive HTTP/1.1 connection to an address the SSRF guard checked, carrying one request at a time.
//
// Why not AsyncHTTPClient: profiles of webhook deliveries put about a fifth of the process's CPU in its connection
// pool, request state machines and task hops. Outbound requests here need far less than it offers: one address,
// already checked; HTTP/1.1 with keep-alive; TLS; a deadline; a size limit; and no redirects, proxies, decompression
// or streaming. NIO's HTTP/1.1 codec does the parsing; this file only sequences one exchange after another.
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// A request ready for the wire.
struct HTTP1Exchange: Sendable {
    var head: HTTPRequestHead
    var body: ByteBuffer?
    /// When the whole exchange must be over, the response read included.
    var deadline: NIODeadline
    /// Seconds the deadline stands for, for the error message.
    var timeout: TimeInterval
    /// The largest body accepted, in bytes.
    var responseLimit: Int
}

/// A complete response and whether its connection may carry another request.
struct HTTP1Reply: Sendable {
    var response: OutboundResponse
    var keepAlive: Bool
}

/// Why an exchange ended without a response. ``OutboundHTTP`` turns these into ``OutboundError``s.
enum HTTP1Failure: Error {
    /// The deadline passed; `seconds` is the timeout that was set.
    case timedOut(seconds: TimeInterval)
    /// The body (or its announced length) exceeded `limit` bytes.
    case tooLarge(limit: Int)
    /// The peer closed the connection before the response was complete. `responseStarted` is false when not a byte of
    /// the response came, which on a reused connection usually means the server had just closed it as idle.
    case closed(responseStarted: Bool)
    /// The transport failed (reset, TLS, a malformed response…).
    case transport(any Error)
}

final class HTTP1Connection: Sendable {
    let channel: any Channel
    private let handler: NIOLoopBound<HTTP1ExchangeHandler>

    private init(channel: any Channel, handler: NIOLoopBound<HTTP1ExchangeHandler>) {
        self.channel = channel
        self.handler = handler
    }

    /// Connects to `address`, with TLS when `tls` is given (`serverName` is then sent as SNI and the certificate must
    /// match it; for address literals pass `nil` and the certificate must name the address).
    static func connect(
        to address: SocketAddress, tls: NIOSSLContext?, serverName: String?, timeout: TimeAmount
    ) async throws -> HTTP1Connection {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(to: address) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let tls {
                        try pipeline.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName))
                    }
                    try pipeline.addHTTPClientHandlers()
                    let handler = HTTP1ExchangeHandler()
                    try pipeline.addHandler(handler)
                    return HTTP1Connection(channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
                }
            }
    }

    /// Whether the connection is still open and idle, so it may carry another request.
    var isReusable: Bool { channel.isActive }

    /// Sends `exchange` and reads the whole response. Cancelling the calling task closes the connection.
    func execute(_ exchange: HTTP1Exchange) async throws -> HTTP1Reply {
        let promise = channel.eventLoop.makePromise(of: HTTP1Reply.self)
        let handler = self.handler
        if channel.eventLoop.inEventLoop {
            handler.value.start(exchange, promise: promise)
        } else {
            channel.eventLoop.execute { handler.value.start(exchange, promise: promise) }
        }
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    func close() {
        channel.close(promise: nil)
    }
}

/// Writes one request and gathers its response; fails the exchange, and closes the connection, on anything else.
final class HTTP1ExchangeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private struct Pending {
        let promise: EventLoopPromise<HTTP1Reply>
        let limit: Int
        let timer: Scheduled<Void>
        var head: HTTPResponseHead?
        var body: ByteBuffer?
        /// A 1xx response came; its end is not the response's.
        var skippingInterim = false
    }

    private var context: ChannelHandlerContext?
    private var pending: Pending?
    /// An error that came while no exchange was running (a TLS alert after a response), reported to the next one.
    private var idleError: (any Error)?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func start(_ exchange: HTTP1Exchange, promise: EventLoopPromise<HTTP1Reply>) {
        guard let context, context.channel.isActive, pending == nil else {
            promise.fail(idleError.map { HTTP1Failure.transport($0) } ?? HTTP1Failure.closed(responseStarted: false))
            return
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let timer = context.eventLoop.scheduleTask(deadline: exchange.deadline) {
            handler.value.fail(.timedOut(seconds: exchange.timeout))
        }
        pending = Pending(promise: promise, limit: exchange.responseLimit, timer: timer)
        context.write(wrapOutboundOut(.head(exchange.head)), promise: nil)
        if let body = exchange.body {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard var exchange = pending else {
            // A response nobody asked for: the connection is out of step, so nothing more can be trusted on it.
            context.close(promise: nil)
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let head):
            if head.status.code < 200, head.status != .switchingProtocols {
                exchange.skippingInterim = true
                pending = exchange
                return
            }
            if let announced = head.headers.first(name: "content-length").flatMap(Int.init), announced > exchange.limit {
                return fail(.tooLarge(limit: exchange.limit))
            }
            exchange.head = head
            pending = exchange
        case .body(var chunk):
            let received = (exchange.body?.readableBytes ?? 0) + chunk.readableBytes
            guard received <= exchange.limit else { return fail(.tooLarge(limit: exchange.limit)) }
            // Held outside `pending` while appending, so the buffer is not shared and grows in place.
            pending?.body = nil
            if exchange.body == nil {
                exchange.body = chunk
            } else {
                exchange.body!.writeBuffer(&chunk)
            }
            pending = exchange
        case .end:
            if exchange.skippingInterim {
                exchange.skippingInterim = false
                pending = exchange
                return
            }
            guard let head = exchange.head else { return fail(.closed(responseStarted: true)) }
            pending = nil
            exchange.timer.cancel()
            let response = OutboundResponse(
                status: Int(head.status.code), headers: head.headers.map { ($0.name, $0.value) },
                body: exchange.body.map { Data($0.readableBytesView) } ?? Data())
            exchange.promise.succeed(HTTP1Reply(response: response, keepAlive: head.isKeepAlive))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(.closed(responseStarted: pending?.head != nil))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if pending == nil { idleError = error }
        fail(.transport(error))
        context.close(promise: nil)
    }

    /// Ends the running exchange with `failure` and closes the connection; nothing when no exchange runs.
    private func fail(_ failure: HTTP1Failure) {
        guard let exchange = pending else { return }
        pending = nil
        exchange.timer.cancel()
        exchange.promise.fail(failure)
        context?.close(promise: nil)
    }
}
