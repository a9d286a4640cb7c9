"""sde study: the top floor. Composes sde_datagen, sde_train and sde_tasks into design studies; nothing imports it."""
