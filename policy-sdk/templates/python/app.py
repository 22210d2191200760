"""__TITLE__ component entry: componentize-py exports `Router`, the SDK's glue around the policy."""

from switchyard_policy.component import export

from policy import RoutingPolicy

Router = export(RoutingPolicy)
