// The pure layer's types (group names, node ids, views, configuration) are part of this
// library's API: an application imports QSMCore alone.
@_exported import QSMProtocol
