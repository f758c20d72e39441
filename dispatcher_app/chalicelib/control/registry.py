"""The functions as the Lambda control plane defines them.

`FunctionRegistry` mirrors list_functions + reserved concurrency, refreshed in the
background, so `put-function-concurrency` or `update-function-code` made with any
AWS tool takes effect within one refresh interval and the call path reads memory.
"""
from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from chalicelib.errors import ResourceNotFound, ServiceUnavailable
from chalicelib.model import NO_ASYNC_CONFIG, Alias, AsyncConfig, Cors, FunctionConfig, FunctionUrl, LogSettings
from chalicelib.model import EventSourceMapping as Mapping

log = logging.getLogger("mk1.functions")

THROTTLE_TAG = "mk1:throttle"
DETAIL_EVERY = 5       # reads: tags, event-invoke configs, aliases and mappings are read every 5th (see refresh)
MISS_REFRESH_S = 0.1   # at most one control-plane read this often for names or qualifiers not known


@dataclass
class _Function:
    """One function in the control plane: $LATEST, its published versions, its aliases."""
    latest: FunctionConfig
    versions: dict[str, FunctionConfig] = field(default_factory=dict)
    aliases: dict[str, Alias] = field(default_factory=dict)
    urls: list[FunctionUrl] = field(default_factory=list)


class FunctionRegistry:
    """A copy of the control plane kept in memory: the call path resolves a name and qualifier
    with dict lookups, never a network round trip. refresh() reads it again (in the background)."""

    def __init__(self, lam, clock, region: str = "us-east-1", pick=random.random):
        self.lam = lam
        self.clock = clock
        self.region = region
        self._pick = pick                 # [0, 1): which version an alias with weights runs
        self._functions: dict[str, _Function] = {}
        self._lock = threading.Lock()
        self._last_refresh = 0.0
        self.account = ""                 # from the functions' ARNs (the endpoint's account)
        self.generation = 0               # counts reads: a config of a later read is the newer one
        self._refreshing = threading.Lock()
        self._read_started = -MISS_REFRESH_S
        self._gone: list[str] = []        # deleted functions a call's read noticed (see take_gone)
        self.mappings: list[Mapping] = []  # event source mappings (triggers/), read with the functions
        self._urls_by_id: dict[str, FunctionUrl] = {}   # function URLs by their id (read with the aliases)

    def refresh(self, full: bool = False) -> set[str]:
        """Read every function and version again (each second); their tags, event-invoke configs and
        aliases, and the event source mappings, every DETAIL_EVERY reads, at a read a call's miss
        asks for (`full`), and for a function not seen before. Those four calls a function are most of
        a read's cost to the AWS endpoint, which shares the cores with the functions (figure 6: two
        dispatchers reading them every second cost cluster mode a fifth of its throughput).
        Returns the names of functions gone since."""
        found: dict[str, _Function] = {}
        versions: list[dict] = []
        self.generation += 1
        detail = full or self.generation % DETAIL_EVERY == 1
        known = self._functions
        for page in self.lam.get_paginator("list_functions").paginate(FunctionVersion="ALL"):
            for f in page["Functions"]:
                if f.get("Version", "$LATEST") != "$LATEST":
                    versions.append(f)
                    continue
                name, before = f["FunctionName"], known.get(f["FunctionName"])
                fresh = detail or before is None
                found[name] = _Function(self._config(
                    f, self._reserved(name), self.generation,
                    self._throttle(f) if fresh else before.latest.throttle,
                    self._async_config(f) if fresh else before.latest.events))
                if not fresh:
                    found[name].aliases = before.aliases
        for f in versions:
            fn = found.get(f["FunctionName"])
            if fn is not None:
                fn.versions[str(f["Version"])] = self._config(f, fn.latest.reserved, self.generation,
                                                              fn.latest.throttle, fn.latest.events)
        for name, fn in found.items():
            if detail or name not in known:
                fn.aliases = self._aliases(name)
                fn.urls = self._urls(name)
            else:
                fn.urls = known[name].urls
        if detail:
            self.mappings = self._mappings()
        with self._lock:
            gone = set(self._functions) - set(found)
            self._functions = found
            self._urls_by_id = {u.url_id: u for fn in found.values() for u in fn.urls}
            self._last_refresh = self.clock.monotonic()
            if found and not self.account:
                self.account = next(iter(found.values())).latest.arn.split(":")[4]
        return gone

    def _reserved(self, name: str) -> int | None:
        try:
            return self.lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
        except ClientError:
            return None

    def _throttle(self, f: dict) -> str:
        """The function's tag mk1:throttle=aws switches it to AWS's behaviour at the cap (429 at once);
        anything else keeps mk1's default (wait in the function's queue)."""
        try:
            tags = self.lam.list_tags(Resource=f["FunctionArn"].rsplit(":$LATEST", 1)[0]).get("Tags") or {}
        except ClientError:
            return "queue"
        return "aws" if tags.get(THROTTLE_TAG, "").strip().lower() == "aws" else "queue"

    def _async_config(self, f: dict) -> AsyncConfig:
        dead_letter = (f.get("DeadLetterConfig") or {}).get("TargetArn", "")
        try:
            configs = self.lam.list_function_event_invoke_configs(FunctionName=f["FunctionName"]).get(
                "FunctionEventInvokeConfigs") or []
        except ClientError:
            configs = []
        if not configs and not dead_letter:
            return NO_ASYNC_CONFIG
        c = configs[0] if configs else {}
        dest = c.get("DestinationConfig") or {}
        return AsyncConfig(max_retries=c.get("MaximumRetryAttempts"),
                           max_age_s=int(c.get("MaximumEventAgeInSeconds") or 21_600),
                           on_success=(dest.get("OnSuccess") or {}).get("Destination", ""),
                           on_failure=(dest.get("OnFailure") or {}).get("Destination", ""), dead_letter=dead_letter)

    def _mappings(self) -> list[Mapping]:
        out = []
        try:
            for page in self.lam.get_paginator("list_event_source_mappings").paginate():
                out += [Mapping.from_api(m) for m in page["EventSourceMappings"]]
        except ClientError as e:
            log.warning("reading event source mappings failed: %s", e)
            return self.mappings
        return out

    def _urls(self, name: str) -> list[FunctionUrl]:
        """The function's URLs (ListFunctionUrlConfigs) and, for AuthType NONE, whether its
        resource-based policy lets anyone invoke them (AWS answers 403 Forbidden otherwise)."""
        try:
            configs = self.lam.list_function_url_configs(FunctionName=name).get("FunctionUrlConfigs") or []
        except ClientError:
            return []
        out = []
        for c in configs:
            arn_parts = c["FunctionArn"].split(":")
            qualifier = arn_parts[7] if len(arn_parts) > 7 else None
            url_id = c["FunctionUrl"].split("//", 1)[-1].split(".", 1)[0]
            public = c["AuthType"] == "NONE" and self._public(name, qualifier)
            out.append(FunctionUrl(url_id, name, qualifier, c["FunctionUrl"], c["AuthType"],
                                   Cors.from_api(c.get("Cors")), c.get("InvokeMode") or "BUFFERED", public))
        return out

    def _public(self, name: str, qualifier: str | None) -> bool:
        """A statement allowing principal * lambda:InvokeFunctionUrl (the permission AWS's docs add for
        a NONE URL: add-permission --principal '*' --function-url-auth-type NONE)."""
        import json
        try:
            kw = {"Qualifier": qualifier} if qualifier else {}
            policy = json.loads(self.lam.get_policy(FunctionName=name, **kw)["Policy"])
        except (ClientError, KeyError, ValueError):
            return False
        for st in policy.get("Statement") or []:
            actions = st.get("Action")
            actions = [actions] if isinstance(actions, str) else actions or []
            principal = st.get("Principal")
            anyone = principal == "*" or (isinstance(principal, dict) and principal.get("AWS") == "*")
            if st.get("Effect") == "Allow" and anyone and \
                    any(a in ("lambda:InvokeFunctionUrl", "lambda:*") for a in actions):
                return True
        return False

    def url(self, url_id: str) -> FunctionUrl:
        """A function URL by its id; a URL created a moment ago is read at once (as a new name is)."""
        found = self._urls_by_id.get(url_id)
        if found is None and self._read_again():
            found = self._urls_by_id.get(url_id)
        if found is None:
            raise ResourceNotFound(f"no function URL {url_id}")
        return found

    def describe_urls(self) -> list[dict]:
        return [{"function": u.function, "qualifier": u.qualifier, "url": u.url, "auth_type": u.auth_type,
                 "invoke_mode": u.invoke_mode, "public": u.public}
                for u in sorted(self._urls_by_id.values(), key=lambda u: (u.function, u.qualifier or ""))]

    def _aliases(self, name: str) -> dict[str, Alias]:
        out = {}
        try:
            for page in self.lam.get_paginator("list_aliases").paginate(FunctionName=name):
                for a in page["Aliases"]:
                    weights = (a.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
                    out[a["Name"]] = Alias(a["Name"], str(a["FunctionVersion"]),
                                           tuple((str(v), float(w)) for v, w in weights.items()))
        except ClientError:
            pass   # deleted meanwhile
        return out

    @staticmethod
    def _config(f: dict, reserved: int | None, generation: int, throttle: str,
                events: AsyncConfig = NO_ASYNC_CONFIG) -> FunctionConfig:
        arn = f["FunctionArn"]
        version = str(f.get("Version", "$LATEST"))
        if arn.endswith(f":{version}"):   # FunctionVersion=ALL names every version qualified, $LATEST too
            arn = arn[: -len(version) - 1]
        return FunctionConfig(name=f["FunctionName"], arn=arn, code_sha=f.get("CodeSha256", ""),
                              handler=f.get("Handler", "handler.handler"), runtime=f.get("Runtime", "python3.11"),
                              timeout_s=float(f.get("Timeout", 3)), memory_mb=int(f.get("MemorySize", 128)),
                              env=dict((f.get("Environment") or {}).get("Variables") or {}), reserved=reserved,
                              version=version, layers=tuple(x.get("Arn", "") for x in f.get("Layers") or ()),
                              generation=generation, throttle=throttle, events=events,
                              snap_start=version != "$LATEST" and
                              (f.get("SnapStart") or {}).get("ApplyOn") == "PublishedVersions",
                              logging=LogSettings.from_api(f.get("LoggingConfig")))

    # -- the call path: memory only --
    def get(self, name: str) -> FunctionConfig:
        """The function's $LATEST (its reserved concurrency and limits are the function's)."""
        return self._function(name).latest

    def resolve(self, name: str, qualifier: str | None) -> FunctionConfig:
        """The version a call runs: $LATEST, a version number, or an alias (its routing weights
        picking between two versions)."""
        fn = self._function(name, qualifier)
        if qualifier in (None, "$LATEST"):
            return fn.latest
        config = self._qualified(fn, qualifier)   # type: ignore[arg-type]
        if config is None and self._read_again():   # published a moment ago?
            fn = self._function(name, qualifier)
            config = self._qualified(fn, qualifier)   # type: ignore[arg-type]
        if config is None:
            raise ResourceNotFound(f"Function not found: {fn.latest.arn}:{qualifier}")
        return config

    def _qualified(self, fn: _Function, qualifier: str) -> FunctionConfig | None:
        alias = fn.aliases.get(qualifier)
        return fn.versions.get(self._route(alias) if alias is not None else qualifier)

    def version(self, name: str, version: str | None) -> FunctionConfig:
        """A resolved version again (a queued call runs the version it was accepted for)."""
        return self.resolve(name, version if version and version.isdigit() else None)

    def _route(self, alias: Alias) -> str:
        roll = self._pick()
        for version, weight in alias.weights:
            if roll < weight:
                return version
            roll -= weight
        return alias.version

    def _function(self, name: str, qualifier: str | None = None) -> _Function:
        fn = self._functions.get(name)
        if fn is None and self._read_again():   # created a moment ago?
            fn = self._functions.get(name)
        if fn is None:   # AWS names the version it looked for, $LATEST when none was given
            raise ResourceNotFound(f"Function not found: {self.function_arn(name)}:{qualifier or '$LATEST'}")
        return fn

    def read_again(self) -> bool:
        """Read the control plane now (a permission or URL changed a moment ago), at a bounded rate."""
        return self._read_again()

    def _read_again(self) -> bool:
        """A name or qualifier not known here: read the control plane now, so a function deployed a
        moment ago is invocable at once. One read at a time; a call whose miss came before a read
        began takes that read's result (it holds what the call looked for, if anything does), so a
        flood of unknown names shares reads, made at most every MISS_REFRESH_S. True: look again."""
        missed = self.clock.monotonic()
        with self._refreshing:
            if self._read_started >= missed:
                return True   # a read began after this miss and has ended (this lock was held)
            early = MISS_REFRESH_S - (self.clock.monotonic() - self._read_started)
            if early > 0:
                self.clock.sleep(early)
            self._read_started = self.clock.monotonic()
            try:
                self._gone.extend(self.refresh(full=True))
            except Exception as e:
                raise ServiceUnavailable(f"the Lambda API is not answering: {e}") from e
            return True

    def take_gone(self) -> list[str]:
        """Deleted functions noticed by a read made for a call (the background read retires them)."""
        gone, self._gone = self._gone, []
        return gone

    def function_arn(self, name: str, account: str | None = None) -> str:
        return f"arn:aws:lambda:{self.region}:{account or self.account or '000000000000'}:function:{name}"

    def all(self) -> list[FunctionConfig]:
        return sorted((fn.latest for fn in self._functions.values()), key=lambda c: c.name)

    def versions(self, name: str) -> list[FunctionConfig]:
        fn = self._functions.get(name)
        return [] if fn is None else [fn.latest, *fn.versions.values()]
