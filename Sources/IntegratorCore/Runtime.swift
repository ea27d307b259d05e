// The composition root of one process: settings, database, plugins, and the services and environment built on them.
import Foundation
import Logging
import ServiceLifecycle

/// Everything the API, the CLI, the beat and the workers of one process share. Build one per process: it builds the
/// ``PluginEnvironment`` once, and every plugin contribution runs on it.
public struct Runtime: Sendable {
    public let settings: Settings
    public let database: Database
    /// The one registry of this process: the plugins it was given, as given (`plugins list` and the API agree).
    public let registry: PluginRegistry
    public let clock: any TimeSource
    public let logger: Logger
    public let credentials: CredentialsService
    public let integrations: IntegrationsService
    public let users: UsersService
    public let broker: any Broker
    public let runs: TaskRunStore
    public let tasks: TasksService
    /// Outbound HTTP for plugins: pooled connections, the SSRF guard, rate budgets. Shut down by ``shutdown()``.
    public let outbound: OutboundHTTP
    /// What fetches stored: records, change events, fetch state.
    public let records: RecordsService
    /// Wakes the beat when schedules or timers change.
    public let wakeup: BeatWakeup
    /// Records runs and stages their messages in one transaction (the SQL queue, or the outbox of an external broker).
    public let dispatcher: TaskDispatcher
    public let timers: TimerStore
    public let schedules: SchedulesService
    /// What plugin code works with; handed to task handlers, routes, services and change-event subscribers.
    public let environment: PluginEnvironment

    /// - Parameters:
    ///   - settings: must carry secret keys; the CLI refuses to build a runtime without them.
    ///   - registry: every plugin the process runs, the fetch pipeline included when it should run fetches.
    ///   - passwordHasher: bcrypt cost; tests lower it to keep user creation fast.
    ///   - outboundOptions: defaults to the settings' allowed ranges and the system clock.
    ///   - broker: defaults to the one the settings name; tests hand in their own.
    public init(
        settings: Settings, database: Database, registry: PluginRegistry, clock: any TimeSource = SystemTimeSource(),
        logger: Logger, passwordHasher: PasswordHasher = PasswordHasher(), outboundOptions: OutboundHTTP.Options? = nil,
        broker: (any Broker)? = nil
    ) async throws {
        guard let keys = settings.secretKeys else {
            throw ConfigurationError(variable: "INTEGRATOR_SECRET_KEY", expected: "base64 of 32 bytes (it is not set)")
        }
        self.settings = settings
        self.database = database
        self.registry = registry
        self.clock = clock
        self.logger = logger
        let credentialStore = CredentialStore(database: database)
        let secrets = SecretBox(keys: keys)
        self.outbound = OutboundHTTP(
            options: outboundOptions ?? OutboundHTTP.Options(allowedRanges: settings.outboundAllowedRanges), logger: logger)
        self.credentials = CredentialsService(
            store: credentialStore, registry: registry, box: secrets, clock: clock, outbound: outbound)
        self.integrations = IntegrationsService(
            store: IntegrationStore(database: database), credentials: credentialStore, registry: registry, clock: clock,
            credentialsService: credentials)
        self.users = UsersService(
            store: UserStore(database: database), hasher: passwordHasher,
            tokens: await TokenService(keyRing: keys, clock: clock), apiToken: settings.apiToken, clock: clock)
        let runs = TaskRunStore(database: database)
        if let broker {
            self.broker = broker
        } else {
            switch settings.broker {
            case .sql:
                self.broker = SQLBroker(database: database, clock: clock)
            case .amqp(let url):
                self.broker = try RabbitMQBroker(url: url, runs: runs, clock: clock, logger: logger)
            }
        }
        self.runs = runs
        let wakeup = BeatWakeup()
        let dispatcher = TaskDispatcher(database: database, broker: self.broker, runs: runs, logger: logger)
        self.wakeup = wakeup
        self.dispatcher = dispatcher
        self.timers = TimerStore(database: database, wakeup: wakeup)
        self.tasks = TasksService(
            database: database, broker: self.broker, runs: runs, dispatcher: dispatcher, registry: registry, clock: clock)
        self.records = RecordsService(database: database, integrations: integrations)
        self.schedules = SchedulesService(
            store: ScheduleStore(database: database), integrations: IntegrationStore(database: database),
            dispatcher: dispatcher, registry: registry, wakeup: wakeup, clock: clock)
        self.environment = PluginEnvironment(
            settings: settings, database: database, registry: registry, outbound: outbound, credentials: credentials,
            integrations: integrations, tasks: tasks, timers: timers, secrets: secrets, clock: clock, logger: logger)
    }

    /// Runs and enqueues provider fetches (the fetch pipeline plugin's tasks, `POST …/run`, `integrator run`).
    public var fetches: FetchService { FetchService(environment: environment) }
}

extension Runtime {
    /// Releases what the runtime holds open besides the database (outbound connections, the broker's own
    /// connections). Call once, at the end.
    public func shutdown() async {
        await outbound.shutdown()
        // Flushes pending acknowledgements and joins the broker's threads before the process goes on to exit.
        if let broker = broker as? RabbitMQBroker { await broker.stop() }
    }

    /// A beat on this runtime's database and broker.
    public func makeBeat(
        _ options: BeatOptions = BeatOptions(), identity: String? = nil, onPublished: BeatPublishObserver? = nil
    ) -> Beat {
        Beat(
            database: database, schedules: ScheduleStore(database: database), timers: timers, dispatcher: dispatcher,
            wakeup: wakeup, clock: clock, logger: logger, options: options, identity: identity, onPublished: onPublished,
            environment: environment)
    }

    /// A worker on this runtime's broker, store and plugins; its tasks get this runtime's plugin environment.
    /// - Parameter onRecorded: told the final states of the tasks whose outcomes were just recorded (benchmarks count
    ///   them instead of polling the database).
    public func makeWorker(_ options: WorkerOptions, id: String? = nil, onRecorded: WorkerOutcomeObserver? = nil) -> Worker {
        Worker(
            options: options, broker: broker, runs: runs, registry: registry, timers: timers, environment: environment, clock: clock,
            logger: logger, id: id, onRecorded: onRecorded)
    }

    /// The plugins' services that belong in a process running `roles`, made on this runtime's environment.
    public func pluginServices(for roles: Set<ProcessRole>) throws -> [any Service] {
        try registry.services(for: roles).map { try $0.service.make(environment) }
    }

    /// A migrator for the engine's tables and those of this runtime's plugins.
    public var migrator: Migrator { Migrator(plugins: registry.plugins) }
}
