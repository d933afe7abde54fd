# InboundEvent moves here from the webhooks app. State only: the table keeps its name
# (webhooks_inboundevent) and its rows. Then, in each schema: the model's content type follows it
# (so operators' permissions on it stay), and durable tasks queued under the old handler path run
# under the new one.

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

OLD_HANDLER = "apps.webhooks.services.inbound_event_process"
NEW_HANDLER = "apps.payments.news.inbound_event_process"


def _move(apps, *, to_label, from_label, old_handler, new_handler):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label=to_label, model="inboundevent").exists():
        ContentType.objects.filter(app_label=from_label, model="inboundevent").update(app_label=to_label)
    DurableTask = apps.get_model("core", "DurableTask")
    DurableTask.objects.filter(handler=old_handler).update(handler=new_handler)


def forwards(apps, schema_editor):
    _move(apps, to_label="payments", from_label="webhooks", old_handler=OLD_HANDLER, new_handler=NEW_HANDLER)


def backwards(apps, schema_editor):
    _move(apps, to_label="webhooks", from_label="payments", old_handler=NEW_HANDLER, new_handler=OLD_HANDLER)


class Migration(migrations.Migration):

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("core", "0001_initial"),
        ("payments", "0005_attempt_pending_operation"),
        ("webhooks", "0003_inboundevent_to_payments"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="InboundEvent",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("provider", models.CharField(help_text="the gateway kind whose notification it is", max_length=10)),
                        ("event_id", models.CharField(help_text="the processor's id for it (Adyen has none: eventCode:pspReference:success)", max_length=255)),
                        ("type", models.CharField(db_index=True, help_text="the processor's type (Adyen's eventCode)", max_length=100)),
                        ("body", models.TextField(help_text="the request body exactly as received (what the signature covers)")),
                        ("payload", models.JSONField(help_text="the notification (Stripe's event, one Adyen notification item)")),
                        ("occurred_at", models.DateTimeField(blank=True, help_text="when the processor says it happened", null=True)),
                        ("received_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ("processed_at", models.DateTimeField(blank=True, null=True)),
                        ("state", models.CharField(choices=[("pending", "Pending"), ("processed", "Processed"), ("failed", "Failed")], db_index=True, default="pending", max_length=10)),
                        ("attempts", models.PositiveIntegerField(default=0)),
                        ("last_error", models.TextField(blank=True)),
                        ("result", models.CharField(blank=True, help_text="what processing did", max_length=500)),
                        ("gateway_account", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="inbound_events", to="payments.gatewayaccount")),
                    ],
                    options={
                        "db_table": "webhooks_inboundevent",
                        "ordering": ["-received_at", "-id"],
                        "constraints": [models.UniqueConstraint(fields=("gateway_account", "event_id"), name="webhooks_inbound_event_once")],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(forwards, backwards),
    ]
