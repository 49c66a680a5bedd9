#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness

/// The processes of a run and where they live. On loopback every process shares the
/// coordinator's private namespace; with hosts, each has a namespaced host of its own:
/// host 1 the GMS, then the senders, then the receivers, then the hostile process.
/// Receiver 0 is always the one a perturbation is aimed at.
final class ClusterProcesses {
    let options: RunOptions
    let network: HostNetwork?
    let gmsAddress: QSMSocketAddress
    private(set) var gms: WorkerProcess
    let senders: [WorkerProcess]
    private(set) var receivers: [WorkerProcess]
    /// The host of each receiver, in the order of `receivers`.
    private var receiverHosts: [Int]
    /// The GMS processes killed so far (kept for their exit status).
    private var retiredGMS: [WorkerProcess] = []

    init(options: RunOptions, log: (String) -> Void) throws {
        self.options = options
        let network: HostNetwork?
        if options.hosts {
            if let reason = HostNetwork.unavailableReason { throw HostNetwork.Failure(description: reason) }
            let built = try HostNetwork(count: options.senders + options.receivers + 2)
            log("hosts: \(built.count) network namespaces \(built.prefix)-1...\(built.count) on a bridge "
                + "(GMS on 10.77.0.1, senders from 10.77.0.2, receivers from 10.77.0.\(options.senders + 2))")
            gmsAddress = QSMSocketAddress(HostNetwork.address(of: 1), port: 7_000)
            network = built
        } else {
            network = nil
            // A fixed port (the namespace is private) so that a restarted GMS is found.
            gmsAddress = QSMSocketAddress(.loopback, port: 17_700)
        }
        self.network = network
        gms = try Self.startGMS(options: options, address: gmsAddress, network: network)
        let senderHost = 2
        let receiverHost = 2 + options.senders
        senders = try (0..<options.senders).map {
            try WorkerProcess(name: "sender \($0)", arguments: ["node"], host: senderHost + $0, network: network)
        }
        receiverHosts = (0..<options.receivers).map { receiverHost + $0 }
        receivers = try receiverHosts.enumerated().map {
            try WorkerProcess(name: "receiver \($0.offset)", arguments: ["node"], host: $0.element, network: network)
        }
        _ = try gms.expect("gms", within: 10)
    }

    deinit {
        for worker in everyone where worker.process.waitForExit(timeoutMilliseconds: 0) == nil {
            worker.signal(SIGKILL)
            worker.process.waitForExit(timeoutMilliseconds: 2000)
        }
        network?.tearDown()
    }

    private var everyone: [WorkerProcess] { senders + receivers + [gms] + retiredGMS }

    var hostileHost: Int { options.senders + options.receivers + 2 }

    /// Makes `index` receiver 0 (the one perturbations are aimed at).
    func makeReceiverZero(_ index: Int) {
        receivers.swapAt(0, index)
        receiverHosts.swapAt(0, index)
    }

    /// The hosts network faults are applied to: receiver 0's, or every receiver's
    /// (empty on loopback).
    var faultHosts: [Int] {
        guard network != nil else { return [] }
        return options.faultAtAllReceivers ? receiverHosts : [receiverHosts[0]]
    }

    /// Kills the GMS (SIGKILL: no goodbye to anyone).
    func killGMS() {
        gms.signal(SIGKILL)
        gms.process.waitForExit(timeoutMilliseconds: 2000)
        retiredGMS.append(gms)
    }

    /// Starts a new GMS on the same address, with no memory of the old one.
    func restartGMS() throws {
        gms = try Self.startGMS(options: options, address: gmsAddress, network: network)
        _ = try gms.expect("gms", within: 10)
    }

    private static func startGMS(options: RunOptions, address: QSMSocketAddress, network: HostNetwork?) throws -> WorkerProcess {
        // The secret reaches the GMS worker through its environment (inherited, not on its
        // command line, where every process on the host could read it).
        if let secret = options.secret { setenv("QSM_BENCH_GMS_SECRET", secret, 1) } else { unsetenv("QSM_BENCH_GMS_SECRET") }
        return try WorkerProcess(name: "gms", arguments: ["gms", "\(options.heartbeatTimeoutMilliseconds)", "\(options.partitionSize)",
                                                   "\(address)"],
                          host: network == nil ? nil : 1, network: network)
    }
}
