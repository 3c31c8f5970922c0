import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("calculations", "0012_rerun_result_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="calculation",
            name="expected_outputs",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="calculation",
            name="verdict",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="workflowrun",
            name="rerun_of",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="reruns",
                to="calculations.workflowrun",
            ),
        ),
        migrations.AddField(
            model_name="workflowrun",
            name="expected_steps",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="workflowrun",
            name="verdict",
            field=models.JSONField(blank=True, null=True),
        ),
    ]
