// swift-tools-version: 6.1
import PackageDescription

// The design card: no package dependencies, only the toolchain. CQSMLinux is the one
// C target; it exports the Linux calls Swift's Glibc module does not (epoll, eventfd,
// recvmmsg/sendmmsg, unshare).
let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "QSM",
    products: [
        .library(name: "QSMCore", targets: ["QSMCore"]),
        .library(name: "QSMGMS", targets: ["QSMGMS"]),
        .executable(name: "qsm-bench", targets: ["qsm-bench"]),
        .executable(name: "qsm-node", targets: ["qsm-node"]),
    ],
    targets: [
        .target(name: "CQSMLinux"),
        .target(name: "QSMCore", dependencies: ["CQSMLinux"], swiftSettings: strict),
        .target(name: "QSMGMS", dependencies: ["QSMCore"], swiftSettings: strict),
        .executableTarget(name: "qsm-bench", dependencies: ["QSMCore", "QSMGMS"], swiftSettings: strict),
        .executableTarget(name: "qsm-node", dependencies: ["QSMCore", "QSMGMS"], swiftSettings: strict),
        .testTarget(name: "QSMCoreTests", dependencies: ["QSMCore"], swiftSettings: strict),
        // The executables are dependencies so that `swift test` builds them: process
        // tests run them.
        .testTarget(name: "QSMGMSTests", dependencies: ["QSMGMS", "QSMCore", "qsm-node", "qsm-bench"], swiftSettings: strict),
    ]
)
