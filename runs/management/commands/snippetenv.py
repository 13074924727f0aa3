from django.core.management.base import BaseCommand, CommandError

from runs.sandbox import build, environments


class Command(BaseCommand):
    help = (
        "Build the environments snippets run in (SNIPPET_ENVIRONMENTS, environments.toml): "
        "a virtual environment of each declared interpreter found here, with its pinned "
        "packages, readable by the sandbox's account. Up-to-date ones are left alone."
    )

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", help="Only these environments.")
        parser.add_argument(
            "--rebuild", action="store_true", help="Build again even where up to date."
        )
        parser.add_argument(
            "--list", action="store_true", dest="list_only", help="Only say what is built."
        )

    def handle(self, *, names: list[str], list_only: bool, rebuild: bool, **options) -> None:
        declared = environments.declared()
        unknown = set(names) - {e.name for e in declared}
        if unknown:
            raise CommandError(
                f"Not declared: {', '.join(sorted(unknown))} (declared: "
                f"{', '.join(e.name for e in declared)})."
            )
        missing_default = False
        for env in declared:
            if names and env.name not in names:
                continue
            if list_only:
                state = f"built ({env.interpreter_name})" if env.built else "not built"
                self.stdout.write(f"{env.name}: {state}")
                continue
            about, problem = build.about(env)
            if about is None:
                self.stdout.write(f"Skipped {env.name}: {problem}.")
                missing_default |= env.default
                continue
            manifest = env.manifest
            if not rebuild and manifest and manifest.get("executable") == about["executable"]:
                self.stdout.write(f"{env.name} is up to date ({env.interpreter_name}).")
                continue
            try:
                build.build(env, about, self.stdout.write, self.stderr.write)
            except build.BuildError as exc:
                raise CommandError(str(exc)) from None
        if missing_default:
            raise CommandError("The default environment could not be built: snippets cannot run.")
