# InboundEvent moved to the payments app (inbound processor news belongs to payments; this app keeps
# outbound events only). State only: the table keeps its name, webhooks_inboundevent.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("webhooks", "0002_outbound"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="InboundEvent")],
            database_operations=[],
        ),
    ]
