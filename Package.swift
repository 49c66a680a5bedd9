// swift-tools-version: 6.1
import PackageDescription

// The design card: no package dependencies, only the toolchain.
//
// The targets follow the layering and the compiler enforces it:
// - QSMProtocol is pure: no Glibc, no Foundation, no C shim (a test checks its imports).
//   It holds the value types, wire codecs, packet authentication, the membership client,
//   the protocol and the node machine: everything a node decides, nothing it does.
// - QSMCore is the system layer (CQSMLinux, the one C target, exports what Swift's Glibc
//   module lacks), the event core, buffers, the engine and the public API. It re-exports
//   QSMProtocol, so `import QSMCore` is all an embedding application writes.
// - QSMGMS is the membership service and all view computation; it runs as `qsm-node gms`
//   and is not a library product (its declarations are `package`, for the executables,
//   the simulator and the tests).
// - QSMSimulation runs the pure machines on a simulated network.
// - QSMHarness is what the executables and tests need around them (child processes,
//   network namespaces, flag parsing); the library products do not ship it.
let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "QSM",
    products: [
        .library(name: "QSMCore", targets: ["QSMCore"]),
        .executable(name: "qsm-bench", targets: ["qsm-bench"]),
        .executable(name: "qsm-node", targets: ["qsm-node"]),
    ],
    targets: [
        .target(name: "CQSMLinux"),
        // Counts the process's heap allocations (it replaces malloc and friends in the
        // executable that links it): only qsm-bench links it, for allocations_per_message.
        .target(name: "CQSMAllocationCounter"),
        .target(name: "QSMProtocol", swiftSettings: strict),
        .target(name: "QSMCore", dependencies: ["QSMProtocol", "CQSMLinux"], swiftSettings: strict),
        .target(name: "QSMGMS", dependencies: ["QSMProtocol", "QSMCore"], swiftSettings: strict),
        .target(name: "QSMSimulation", dependencies: ["QSMProtocol", "QSMGMS"], swiftSettings: strict),
        .target(name: "QSMHarness", dependencies: ["QSMCore", "CQSMLinux"], swiftSettings: strict),
        .executableTarget(name: "qsm-bench", dependencies: ["QSMCore", "QSMGMS", "QSMSimulation", "QSMHarness",
                                                           "CQSMAllocationCounter"],
                          swiftSettings: strict),
        .executableTarget(name: "qsm-node", dependencies: ["QSMCore", "QSMGMS", "QSMHarness"], swiftSettings: strict),
        .testTarget(name: "QSMCoreTests", dependencies: ["QSMProtocol", "QSMCore", "QSMSimulation", "QSMHarness"],
                    swiftSettings: strict),
        // The executables are dependencies so that `swift test` builds them: process
        // tests run them.
        .testTarget(name: "QSMGMSTests", dependencies: ["QSMGMS", "QSMCore", "QSMHarness", "qsm-node", "qsm-bench"],
                    swiftSettings: strict),
    ]
)
