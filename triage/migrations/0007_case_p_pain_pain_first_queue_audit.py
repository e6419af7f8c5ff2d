# Pain-first queue (issue 15): p(pain) copied onto the case and indexed; blind audit cases.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('triage', '0006_unit_settings_audit_share_keyframe_period'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='triagecase',
            name='case_queue_open',
        ),
        migrations.AddField(
            model_name='triagecase',
            name='is_audit',
            field=models.BooleanField(default=False, help_text="A random automatic verdict sent to a nurse blind (she does not see the model's verdict)."),
        ),
        migrations.AddField(
            model_name='triagecase',
            name='p_pain',
            field=models.FloatField(default=0.5, help_text="The model's p(pain), copied: the queue puts likely pain first."),
        ),
        # Existing cases take their prediction's p(pain), so the pain-first order holds for them too.
        migrations.RunSQL(
            "UPDATE triage_triagecase SET p_pain = "
            "(SELECT p.p_pain FROM triage_prediction p WHERE p.id = triage_triagecase.prediction_id)",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AddIndex(
            model_name='triagecase',
            index=models.Index(models.F('unit'), models.OrderBy(models.F('p_pain'), descending=True), models.F('created_at'), models.F('id'), condition=models.Q(('status__in', ['open', 'claimed'])), name='case_queue_open_pain'),
        ),
    ]
