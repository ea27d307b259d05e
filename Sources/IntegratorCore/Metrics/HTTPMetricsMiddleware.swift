// Counts and times API requests by route template, method and status.
import Hummingbird

/// Records every answered request in ``IntegratorMetrics``. The route label is the template the router matched
/// (`/api/v1/tasks/{id}`), so ids in paths never become label values; requests no route matched count as `unmatched`.
public struct HTTPMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: IntegratorMetrics

    public init(metrics: IntegratorMetrics = .shared) {
        self.metrics = metrics
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let method = Self.methodLabel(request.method)
        do {
            let response = try await next(request, context)
            metrics.httpAnswered(route: Self.route(context), method: method, status: response.status.code, duration: ContinuousClock.now - start)
            return response
        } catch {
            // Rendered further out (a middleware before this one, or Hummingbird itself).
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            metrics.httpAnswered(route: Self.route(context), method: method, status: status, duration: ContinuousClock.now - start)
            throw error
        }
    }

    /// The matched route's template. The router sets it once it has resolved the path, after this middleware was
    /// entered, and the context shares it; Hummingbird names a path no route matched `NotFound`.
    static func route(_ context: Context) -> String {
        guard let path = context.endpointPath, path != "NotFound" else { return "unmatched" }
        return path
    }

    /// Standard methods as they are; any other (a client may send anything) as `other`.
    static func methodLabel(_ method: HTTPRequest.Method) -> String {
        switch method {
        case .get, .post, .put, .patch, .delete, .head, .options: method.rawValue
        default: "other"
        }
    }
}
