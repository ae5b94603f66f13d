"""Initial schema: contracts, submissions, provenance, the hash-chained ledger, allocations.

Also creates, in the database itself, the refusal of UPDATE and DELETE on every recorded
table (PostgreSQL: a statement trigger calling a PL/pgSQL function that raises an
exception, on UPDATE, DELETE and TRUNCATE, even of no rows; SQLite: ``RAISE(ABORT, ...)``
row triggers on UPDATE and DELETE) and the ledger head row (``seq`` 0, genesis hash).

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Frozen with this migration (a later migration adds its own tables to the list).
APPEND_ONLY = (
    "contracts", "data_submissions", "accepted_rows", "quarantined_rows", "provenance", "validation_runs",
    "determination_runs", "determinations", "payment_lines", "simulation_runs",
    "funder_allocations", "funder_positions",
)
GENESIS = "0" * 64

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION sib_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'sib-engine: % on % refused: the table is append-only (corrections are new entries)',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$
"""


def _append_only() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(PG_FUNCTION)
    for table in APPEND_ONLY:
        if dialect == "postgresql":
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION sib_refuse_change()")
        else:
            for action in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} BEGIN "
                           f"SELECT RAISE(ABORT, 'sib-engine: {action} on {table} refused: the table is "
                           "append-only (corrections are new entries)'); END")


def _drop_append_only() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS sib_refuse_change()")


def _ledger_head() -> None:
    head = sa.table("ledger_head", sa.column("id", sa.Integer()), sa.column("seq", sa.BigInteger()),
                    sa.column("hash", sa.String()), sa.column("updated_at", sa.DateTime()))
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS, "updated_at": now}])


def upgrade() -> None:
    op.create_table('contracts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('deal_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('format_version', sa.String(length=40), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('source_name', sa.Text(), nullable=False),
    sa.Column('source_text', sa.Text(), nullable=False),
    sa.Column('amendments', sa.JSON(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contracts')),
    sa.UniqueConstraint('content_hash', name=op.f('uq_contracts_content_hash'))
    )
    op.create_index(op.f('ix_contracts_deal_id'), 'contracts', ['deal_id'], unique=False)
    op.create_table('ledger_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_head'))
    )
    op.create_table('provenance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('engine_version', sa.String(length=40), nullable=False),
    sa.Column('contract_hash', sa.String(length=64), nullable=False),
    sa.Column('data_hash', sa.String(length=64), nullable=True),
    sa.Column('seed', sa.BigInteger(), nullable=True),
    sa.Column('as_of', sa.Date(), nullable=True),
    sa.Column('python', sa.String(length=40), nullable=False),
    sa.Column('packages', sa.JSON(), nullable=False),
    sa.Column('command', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provenance'))
    )
    op.create_table('data_submissions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('deal_id', sa.String(length=64), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('accepted', sa.Integer(), nullable=False),
    sa.Column('quarantined', sa.Integer(), nullable=False),
    sa.Column('flagged', sa.Integer(), nullable=False),
    sa.Column('hold', sa.Boolean(), nullable=False),
    sa.Column('hold_reasons', sa.JSON(), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('columns', sa.JSON(), nullable=False),
    sa.Column('accepted_hash', sa.String(length=64), nullable=False),
    sa.Column('restates_id', sa.Integer(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'], name=op.f('fk_data_submissions_contract_id_contracts')),
    sa.ForeignKeyConstraint(['restates_id'], ['data_submissions.id'], name=op.f('fk_data_submissions_restates_id_data_submissions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_data_submissions')),
    sa.UniqueConstraint('contract_id', 'content_hash', 'key_id', name=op.f('uq_data_submissions_contract_id_content_hash_key_id'))
    )
    op.create_index(op.f('ix_data_submissions_contract_id'), 'data_submissions', ['contract_id'], unique=False)
    op.create_index(op.f('ix_data_submissions_deal_id'), 'data_submissions', ['deal_id'], unique=False)
    op.create_table('simulation_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uid', sa.String(length=32), nullable=False),
    sa.Column('deal_id', sa.String(length=64), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('provenance_id', sa.Integer(), nullable=False),
    sa.Column('contract_hash', sa.String(length=64), nullable=False),
    sa.Column('engine_version', sa.String(length=40), nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=False),
    sa.Column('worlds', sa.Integer(), nullable=True),
    sa.Column('assumptions', sa.JSON(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'], name=op.f('fk_simulation_runs_contract_id_contracts')),
    sa.ForeignKeyConstraint(['provenance_id'], ['provenance.id'], name=op.f('fk_simulation_runs_provenance_id_provenance')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_simulation_runs')),
    sa.UniqueConstraint('entry_hash', name=op.f('uq_simulation_runs_entry_hash')),
    sa.UniqueConstraint('seq', name=op.f('uq_simulation_runs_seq')),
    sa.UniqueConstraint('uid', name=op.f('uq_simulation_runs_uid'))
    )
    op.create_index(op.f('ix_simulation_runs_deal_id'), 'simulation_runs', ['deal_id'], unique=False)
    op.create_table('accepted_rows',
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('pos', sa.Integer(), nullable=False),
    sa.Column('row', sa.Integer(), nullable=False),
    sa.Column('contract_code', sa.String(length=64), nullable=True),
    sa.Column('contract_version', sa.Integer(), nullable=True),
    sa.Column('participant_id', sa.String(length=64), nullable=True),
    sa.Column('metric', sa.String(length=64), nullable=True),
    sa.Column('date', sa.Date(), nullable=True),
    sa.Column('value', sa.Double(), nullable=True),
    sa.Column('cohort', sa.String(length=64), nullable=True),
    sa.Column('group_name', sa.String(length=64), nullable=True),
    sa.Column('municipality', sa.String(length=64), nullable=True),
    sa.Column('age', sa.Integer(), nullable=True),
    sa.Column('prior_months', sa.Integer(), nullable=True),
    sa.Column('flags', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('submission_id', 'pos', name=op.f('pk_accepted_rows'))
    )
    op.create_table('quarantined_rows',
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('pos', sa.Integer(), nullable=False),
    sa.Column('row', sa.Integer(), nullable=False),
    sa.Column('source', sa.Text(), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('reasons', sa.Text(), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('participant_id', sa.String(length=64), nullable=True),
    sa.Column('cells', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('submission_id', 'pos', name=op.f('pk_quarantined_rows'))
    )
    op.create_table('validation_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('provenance_id', sa.Integer(), nullable=False),
    sa.Column('tolerance', sa.String(length=40), nullable=False),
    sa.Column('hold', sa.Boolean(), nullable=False),
    sa.Column('hold_reasons', sa.JSON(), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('checks', sa.JSON(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('timings', sa.JSON(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['provenance_id'], ['provenance.id'], name=op.f('fk_validation_runs_provenance_id_provenance')),
    sa.ForeignKeyConstraint(['submission_id'], ['data_submissions.id'], name=op.f('fk_validation_runs_submission_id_data_submissions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_validation_runs'))
    )
    op.create_index(op.f('ix_validation_runs_submission_id'), 'validation_runs', ['submission_id'], unique=False)
    op.create_table('determination_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uid', sa.String(length=32), nullable=False),
    sa.Column('deal_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('validation_run_id', sa.Integer(), nullable=True),
    sa.Column('provenance_id', sa.Integer(), nullable=False),
    sa.Column('previous_run_id', sa.Integer(), nullable=True),
    sa.Column('as_of', sa.Date(), nullable=True),
    sa.Column('contract_hash', sa.String(length=64), nullable=False),
    sa.Column('data_hash', sa.String(length=64), nullable=False),
    sa.Column('accepted_hash', sa.String(length=64), nullable=False),
    sa.Column('engine_version', sa.String(length=40), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('n_determinations', sa.Integer(), nullable=False),
    sa.Column('n_lines', sa.Integer(), nullable=False),
    sa.Column('net_minor', sa.BigInteger(), nullable=False),
    sa.Column('rates', sa.JSON(), nullable=False),
    sa.Column('notes', sa.JSON(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'], name=op.f('fk_determination_runs_contract_id_contracts')),
    sa.ForeignKeyConstraint(['previous_run_id'], ['determination_runs.id'], name=op.f('fk_determination_runs_previous_run_id_determination_runs')),
    sa.ForeignKeyConstraint(['provenance_id'], ['provenance.id'], name=op.f('fk_determination_runs_provenance_id_provenance')),
    sa.ForeignKeyConstraint(['submission_id'], ['data_submissions.id'], name=op.f('fk_determination_runs_submission_id_data_submissions')),
    sa.ForeignKeyConstraint(['validation_run_id'], ['validation_runs.id'], name=op.f('fk_determination_runs_validation_run_id_validation_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_determination_runs')),
    sa.UniqueConstraint('entry_hash', name=op.f('uq_determination_runs_entry_hash')),
    sa.UniqueConstraint('seq', name=op.f('uq_determination_runs_seq')),
    sa.UniqueConstraint('uid', name=op.f('uq_determination_runs_uid'))
    )
    op.create_index('ix_determination_runs_deal_seq', 'determination_runs', ['deal_id', 'seq'], unique=False)
    op.create_table('determinations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('determination', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('period', sa.String(length=64), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('data_cutoff', sa.Date(), nullable=False),
    sa.Column('payment_date', sa.Date(), nullable=False),
    sa.Column('terms_date', sa.Date(), nullable=False),
    sa.Column('amendments', sa.JSON(), nullable=False),
    sa.Column('clause', sa.Text(), nullable=True),
    sa.Column('first_made', sa.Boolean(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['determination_runs.id'], name=op.f('fk_determinations_run_id_determination_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_determinations')),
    sa.UniqueConstraint('entry_hash', name=op.f('uq_determinations_entry_hash')),
    sa.UniqueConstraint('seq', name=op.f('uq_determinations_seq'))
    )
    op.create_index(op.f('ix_determinations_run_id'), 'determinations', ['run_id'], unique=False)
    op.create_table('funder_allocations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('date', sa.Date(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('tranche', sa.String(length=64), nullable=True),
    sa.Column('step', sa.Integer(), nullable=True),
    sa.Column('trigger', sa.String(length=64), nullable=True),
    sa.Column('determination', sa.String(length=64), nullable=True),
    sa.Column('clause', sa.Text(), nullable=True),
    sa.Column('why', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['determination_runs.id'], name=op.f('fk_funder_allocations_run_id_determination_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_funder_allocations'))
    )
    op.create_index(op.f('ix_funder_allocations_run_id'), 'funder_allocations', ['run_id'], unique=False)
    op.create_table('funder_positions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('party', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('tranches', sa.JSON(), nullable=False),
    sa.Column('invested_minor', sa.BigInteger(), nullable=False),
    sa.Column('received_minor', sa.BigInteger(), nullable=False),
    sa.Column('guarantee_received_minor', sa.BigInteger(), nullable=False),
    sa.Column('guarantee_paid_minor', sa.BigInteger(), nullable=False),
    sa.Column('outstanding_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('irr', sa.String(length=60), nullable=True),
    sa.Column('multiple', sa.String(length=60), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['determination_runs.id'], name=op.f('fk_funder_positions_run_id_determination_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_funder_positions'))
    )
    op.create_index(op.f('ix_funder_positions_run_id'), 'funder_positions', ['run_id'], unique=False)
    op.create_table('payment_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('determination', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('period', sa.String(length=64), nullable=False),
    sa.Column('payment_date', sa.Date(), nullable=False),
    sa.Column('payer', sa.String(length=64), nullable=False),
    sa.Column('trigger', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.Text(), nullable=False),
    sa.Column('units', sa.String(length=80), nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('clause', sa.Text(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('unrounded', sa.Text(), nullable=True),
    sa.Column('trace', sa.Text(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['determination_runs.id'], name=op.f('fk_payment_lines_run_id_determination_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_lines')),
    sa.UniqueConstraint('entry_hash', name=op.f('uq_payment_lines_entry_hash')),
    sa.UniqueConstraint('seq', name=op.f('uq_payment_lines_seq'))
    )
    op.create_index(op.f('ix_payment_lines_run_id'), 'payment_lines', ['run_id'], unique=False)
    _append_only()
    _ledger_head()



def downgrade() -> None:
    _drop_append_only()
    op.drop_index(op.f('ix_payment_lines_run_id'), table_name='payment_lines')
    op.drop_table('payment_lines')
    op.drop_index(op.f('ix_funder_positions_run_id'), table_name='funder_positions')
    op.drop_table('funder_positions')
    op.drop_index(op.f('ix_funder_allocations_run_id'), table_name='funder_allocations')
    op.drop_table('funder_allocations')
    op.drop_index(op.f('ix_determinations_run_id'), table_name='determinations')
    op.drop_table('determinations')
    op.drop_index('ix_determination_runs_deal_seq', table_name='determination_runs')
    op.drop_table('determination_runs')
    op.drop_index(op.f('ix_validation_runs_submission_id'), table_name='validation_runs')
    op.drop_table('validation_runs')
    op.drop_table('quarantined_rows')
    op.drop_table('accepted_rows')
    op.drop_index(op.f('ix_simulation_runs_deal_id'), table_name='simulation_runs')
    op.drop_table('simulation_runs')
    op.drop_index(op.f('ix_data_submissions_deal_id'), table_name='data_submissions')
    op.drop_index(op.f('ix_data_submissions_contract_id'), table_name='data_submissions')
    op.drop_table('data_submissions')
    op.drop_table('provenance')
    op.drop_table('ledger_head')
    op.drop_index(op.f('ix_contracts_deal_id'), table_name='contracts')
    op.drop_table('contracts')
