extension Dictionary {
    /// Makes room at once for those of `keys` not yet held, before they are inserted one
    /// by one: a table filled with thousands of entries (a membership update of 8,192
    /// groups) would otherwise outgrow itself a dozen times, each outgrown copy left as
    /// free heap (issue 15, the sender's RSS). Keys already held take no room, so
    /// reinstalling the same groups does not double the table.
    package mutating func reserveCapacity(forNew keys: some Sequence<Key>) {
        var arriving = 0
        for key in keys where index(forKey: key) == nil { arriving += 1 }
        reserveCapacity(count + arriving)
    }
}
