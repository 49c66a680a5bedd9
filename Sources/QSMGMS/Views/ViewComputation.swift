import QSMProtocol


/// Computes the GMS's views for a whole membership table in one batch, exactly as the
/// service does when it applies a batch: for tools (qsm-bench regions) and tests that
/// want the region structure of a given membership without running a service.
package struct ViewComputation {
    private var views: MembershipViews

    package init(configuration: MembershipConfiguration) throws(ConfigurationError) {
        try configuration.validate()
        views = MembershipViews(configuration: configuration)
    }

    /// Applies a membership table: live nodes, each node's groups, and every group's name.
    package mutating func apply(nodes: [NodeID: QSMSocketAddress], memberships: [NodeID: Set<GroupID>],
                               groups: [GroupID: GroupName]) {
        var snapshot = MembershipSnapshot()
        snapshot.nodes = nodes
        snapshot.memberships = memberships
        for (id, name) in groups {
            snapshot.groups[id] = (name, views.configuration.hybridGroups.contains(name.text))
        }
        _ = views.apply(snapshot)
    }

    package var regions: Dictionary<RegionID, RegionView>.Values { views.regions.values }
    package var groups: Dictionary<GroupID, GroupView>.Values { views.groups.values }
    package var addressesInUse: Int { views.addressesInUse }
    /// Distinct hierarchies among groups with members (1 in `full` mode if any group has members).
    package var hierarchyCount: Int {
        views.configuration.mode == .full ? (views.regions.isEmpty ? 0 : 1) : Set(views.hierarchyOf.values).count
    }
}
