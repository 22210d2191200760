"""ab_split component entry: componentize-py exports `Router`, the SDK's glue around AbSplit."""

from switchyard_policy.component import export

from ab_split import AbSplit

Router = export(AbSplit)
